// Collective error agreement for steps that may fail on some ranks only (set-up, checkpoints).
#pragma once

#include <exception>
#include <string>

#include "comm/communicator.h"
#include "launcher/config.h"

namespace lowband::launcher {

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
  if (error) std::rethrow_exception(error);
  if (failed > 0)
    throw ConfigError("failed on " + std::to_string(static_cast<int>(failed)) +
                      " other rank(s); see that rank's error");
}

}  // namespace lowband::launcher
