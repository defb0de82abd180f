// libFuzzer harness: the checkpoint readers. Any input is a rank state (runtime/state_dict.h)
// that serialises back to the same bytes, or one StateError; and a COMPLETE marker that writes
// back to text parsing to the same marker, or one CheckpointError.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "launcher/checkpoint.h"
#include "runtime/state_dict.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  using namespace lowband;
  try {
    const runtime::StateDict state = runtime::StateDict::parse({data, size}, "fuzz.state");
    const std::vector<uint8_t> again = state.serialize();
    // Entries are stored in name order, so an intact file in that order round-trips exactly.
    if (again.size() != size) std::abort();
    runtime::StateDict::parse(again, "fuzz-again.state");
  } catch (const runtime::StateError&) {
  }
  try {
    const std::string text(reinterpret_cast<const char*>(data), size);
    const launcher::CheckpointMarker m = launcher::CheckpointMarker::parse(text, "COMPLETE");
    const launcher::CheckpointMarker back =
        launcher::CheckpointMarker::parse(m.text(), "COMPLETE-again");
    if (back.text() != m.text() || back.step != m.step || back.files.size() != m.files.size())
      std::abort();
  } catch (const launcher::CheckpointError&) {
  }
  return 0;
}
