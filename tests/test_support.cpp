#include "tests/test_support.h"

#include <unistd.h>

#include <cstdlib>
#include <random>
#include <stdexcept>

namespace lowband::test {

TempDir::TempDir() {
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("lowband-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& text) const {
  std::filesystem::path p = path_ / name;
  std::ofstream(p) << text;
  return p.string();
}

std::string sourceDir() {
  const char* dir = std::getenv("LOWBAND_SOURCE_DIR");
  if (!dir)
    throw std::runtime_error("LOWBAND_SOURCE_DIR is not set; run the tests with meson test");
  return dir;
}

}  // namespace lowband::test
