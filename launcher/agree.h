// Collective error agreement for steps that may fail on some ranks only (set-up, checkpoints).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "launcher/config.h"

namespace lowband::launcher {

// True once agreeOn has thrown: every rank knows of the failure and none waits in a collective,
// so the job can end normally (every rank returns its status) instead of being aborted, which
// lets each rank's error message reach the launcher's output.
inline bool& failureAgreed() {
  static bool agreed = false;
  return agreed;
}

// Runs `step` on every rank, then every rank learns whether it failed anywhere: the failing
// rank rethrows its own error, the others a ConfigError saying so, so none is left waiting in
// a collective (the CLI prints rank 0's message; a failing rank's runtime error is printed by
// that rank).
template <class F>
void agreeOn(comm::Communicator& world, F&& step) {
  std::exception_ptr error;
  try {
    step();
  } catch (...) {
    error = std::current_exception();
  }
  float failed = error ? 1.0f : 0.0f;
  world.allReduce(&failed, 1);
  if (failed > 0) failureAgreed() = true;
  if (error) std::rethrow_exception(error);
  if (failed > 0)
    throw ConfigError("failed on " + std::to_string(static_cast<int>(failed)) +
                      " other rank(s); see that rank's error");
}

// Every rank's `own` (up to 127 bytes), in rank order: what every rank learns of the others (a
// host name and pid, why a checkpoint failed its checks there). Collective over `world`.
inline std::vector<std::string> gatherText(comm::Communicator& world, const std::string& own) {
  constexpr std::size_t kBytes = 128;
  std::vector<uint8_t> mine(kBytes, 0), all(kBytes * static_cast<std::size_t>(world.size()));
  std::memcpy(mine.data(), own.data(), std::min(own.size(), kBytes - 1));
  world.allGatherBytesAsync(mine.data(), all.data(), static_cast<int64_t>(kBytes))->wait();
  std::vector<std::string> out;
  for (int r = 0; r < world.size(); ++r)
    out.emplace_back(
        reinterpret_cast<const char*>(all.data() + kBytes * static_cast<std::size_t>(r)));
  return out;
}

}  // namespace lowband::launcher
