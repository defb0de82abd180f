#include "runtime/error.h"

#include <cstring>

namespace lowband::runtime {

const char* sourcePath(const char* file) {
  while (std::strncmp(file, "../", 3) == 0) file += 3;
  return file;
}

Error::Error(const std::string& library, const std::string& message, const char* file, int line)
    : std::runtime_error(library + " error at " + sourcePath(file) + ":" + std::to_string(line) +
                         ": " + message),
      library_(library),
      file_(sourcePath(file)),
      line_(line) {}

}  // namespace lowband::runtime
