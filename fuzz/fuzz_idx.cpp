// libFuzzer harness: the IDX readers (plain and gzip), from memory. Any input is images or
// labels holding exactly what the header promises, within kIdxMaxBytes, or one DataError; a
// header promising more than the input holds must be refused before it is allocated (the
// -rss_limit_mb of scripts/fuzz.sh makes that a finding).
#include <cstdint>
#include <cstdlib>
#include <span>

#include "nn/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  using namespace lowband::nn;
  const std::span<const uint8_t> file(data, size);
  const bool gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  try {
    const IdxImages im = parseIdxImages(file, "fuzz-images");
    const auto pixels = static_cast<int64_t>(im.pixels.size());
    // Signed products: UBSan flags any dimensions whose product overflows.
    if (pixels != im.count * im.pixelsPerImage() || pixels > kIdxMaxBytes) std::abort();
    if (!gzip && 16 + pixels != static_cast<int64_t>(size)) std::abort();
  } catch (const DataError&) {
  }
  try {
    const std::vector<uint8_t> labels = parseIdxLabels(file, "fuzz-labels");
    const auto count = static_cast<int64_t>(labels.size());
    if (count > kIdxMaxBytes || (!gzip && 8 + count != static_cast<int64_t>(size))) std::abort();
  } catch (const DataError&) {
  }
  return 0;
}
