// Helpers shared by the test binaries.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

namespace lowband::test {

// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  // Writes `text` to a file in the directory and returns its path.
  std::string write(const std::string& name, const std::string& text) const;

 private:
  std::filesystem::path path_;
};

// The project's source directory (set by meson for every test).
std::string sourceDir();

}  // namespace lowband::test
