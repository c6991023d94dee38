#include "halfserve/util/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>

#include "halfserve/util/error.h"

namespace halfserve {

namespace {
std::string errno_text() { return std::strerror(errno); }
}  // namespace

namespace {

// Reads `size` bytes of `fd` into fresh anonymous pages (page-aligned like a mapping, released the same way).
std::byte* copy_into_memory(int fd, size_t size, const std::string& path) {
  void* memory = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) throw Error(path + ": cannot allocate " + std::to_string(size) + " bytes: " + errno_text());
  auto* bytes = static_cast<std::byte*>(memory);
  size_t done = 0;
  while (done < size) {
    const ssize_t got = ::pread(fd, bytes + done, size - done, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      const std::string reason = got < 0 ? errno_text() : "the file got shorter while it was read";
      ::munmap(memory, size);
      throw Error(path + ": cannot read: " + reason);
    }
    done += static_cast<size_t>(got);
  }
  ::mprotect(memory, size, PROT_READ);
  return bytes;
}

}  // namespace

MappedFile::MappedFile(const std::string& path, FileResidence residence) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + errno_text());
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const std::string reason = errno_text();
    ::close(fd);
    throw Error(path + ": cannot stat: " + reason);
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  size_ = static_cast<size_t>(info.st_size);
  if (size_ > 0 && residence == FileResidence::copied) {
    try {
      data_ = copy_into_memory(fd, size_, path);
    } catch (...) {
      ::close(fd);
      throw;
    }
  } else if (size_ > 0) {
    void* mapping = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) {
      const std::string reason = errno_text();
      ::close(fd);
      throw Error(path + ": cannot map: " + reason);
    }
    data_ = static_cast<const std::byte*>(mapping);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
}

std::string read_file_bounded(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open: " + errno_text());
  std::string content;
  char buffer[1 << 16];
  while (in) {
    in.read(buffer, sizeof buffer);
    content.append(buffer, static_cast<size_t>(in.gcount()));
    if (content.size() > max_bytes)
      throw Error(path + ": larger than the limit of " + std::to_string(max_bytes) + " bytes");
  }
  if (in.bad()) throw Error(path + ": read error");
  return content;
}

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
  std::random_device entropy;
  temp_path_ = path_ + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(entropy());
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(path_ + ": cannot create temporary file " + temp_path_ + ": " + errno_text());
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

void AtomicFileWriter::write(std::span<const std::byte> data) {
  const std::byte* cursor = data.data();
  size_t left = data.size();
  while (left > 0) {
    const ssize_t written = ::write(fd_, cursor, left);
    if (written < 0) {
      if (errno == EINTR) continue;
      throw Error(path_ + ": write failed: " + errno_text());
    }
    cursor += written;
    left -= static_cast<size_t>(written);
  }
}

void AtomicFileWriter::commit() {
  if (::fsync(fd_) != 0) throw Error(path_ + ": fsync failed: " + errno_text());
  if (::close(fd_) != 0) {
    fd_ = -1;
    throw Error(path_ + ": close failed: " + errno_text());
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0)
    throw Error(path_ + ": cannot rename " + temp_path_ + " into place: " + errno_text());
  committed_ = true;
}

}  // namespace halfserve
