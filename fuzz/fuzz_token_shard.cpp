// libFuzzer harness: the token-shard reader. Any input is a valid shard (count consistent with
// the size, tokens < vocab) or one DataError.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "nn/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  using namespace lowband::nn;
  for (const int64_t vocab : {256, 65536}) {
    try {
      const int64_t count = checkTokenShard({data, size}, "fuzz.bin", vocab);
      if (kShardHeaderBytes + 2 * count != static_cast<int64_t>(size)) std::abort();
    } catch (const DataError&) {
    }
  }
  return 0;
}
