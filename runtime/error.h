// Typed errors for failed library calls and bad device use. Every check macro in lowband throws
// one of these with the source location and the library's own message; launcher/main.cpp turns
// them into an exit status.
#pragma once

#include <stdexcept>
#include <string>

namespace lowband::runtime {

class Error : public std::runtime_error {
 public:
  // `library` names the failing layer ("CUDA", "cuBLAS", "MPI", ...); `file`/`line` the call site.
  Error(const std::string& library, const std::string& message, const char* file, int line);
  const std::string& library() const { return library_; }
  const std::string& file() const { return file_; }
  int line() const { return line_; }

 private:
  std::string library_;
  std::string file_;
  int line_;
};

#define LB_DEFINE_ERROR(Name, library)                               \
  class Name : public ::lowband::runtime::Error {                    \
   public:                                                           \
    Name(const std::string& message, const char* file, int line)     \
        : ::lowband::runtime::Error(library, message, file, line) {} \
  }

LB_DEFINE_ERROR(DeviceError, "device");
LB_DEFINE_ERROR(OutOfMemoryError, "memory");
LB_DEFINE_ERROR(ShapeError, "tensor");
LB_DEFINE_ERROR(CudaError, "CUDA");
LB_DEFINE_ERROR(CublasError, "cuBLAS");
LB_DEFINE_ERROR(CudnnError, "cuDNN");

// Strips the build-directory prefix ("../") so messages show project-relative paths.
const char* sourcePath(const char* file);

}  // namespace lowband::runtime

// Throws `Type` (a runtime::Error subclass) with the current source location.
#define LB_THROW(Type, message) throw Type((message), __FILE__, __LINE__)

// Throws `Type` with `message` unless `cond` holds.
#define LB_REQUIRE(cond, Type, message)   \
  do {                                    \
    if (!(cond)) LB_THROW(Type, message); \
  } while (0)
