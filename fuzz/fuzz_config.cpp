// libFuzzer harness: the YAML config loader. Any input is either a config or one ConfigError;
// a config that loads writes back (toYaml) to YAML that loads to the same config.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "launcher/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  using namespace lowband::launcher;
  const std::string text(reinterpret_cast<const char*>(data), size);
  Config config;
  try {
    config = parseConfig(text, "fuzz.yaml", {.world = 4});
  } catch (const ConfigError&) {
    return 0;
  }
  const std::string yaml = toYaml(config);
  try {
    if (toYaml(parseConfig(yaml, "fuzz-resolved.yaml", {.world = 4})) != yaml) std::abort();
  } catch (const ConfigError&) {
    std::abort();  // a resolved config must load again
  }
  return 0;
}
