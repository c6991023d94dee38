#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace halfserve {

// How a file's bytes are held. `mapped` reads them straight from the file's pages, so loading a frozen file costs
// no copy for tensors the engine can use as they are (embedding tables), but a file overwritten or truncated while
// mapped can kill the process (SIGBUS). `copied` reads the file once into memory this process owns: what a server
// uses, since an operator may `cp` a new model over the one it serves.
enum class FileResidence { mapped, copied };

// A read-only view of a whole file's bytes, held as `residence` says.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path, FileResidence residence = FileResidence::mapped);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole small file (config, vocabulary, request) into memory, refusing files over max_bytes.
std::string read_file_bounded(const std::string& path, size_t max_bytes);

// Writes through a temporary file in the same folder and renames it over `path` only once everything was
// written and flushed, so a failed or interrupted write never leaves a partial file under the final name.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();  // removes the temporary file unless commit() succeeded
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(std::span<const std::byte> data);
  void write(const void* data, size_t size) { write({static_cast<const std::byte*>(data), size}); }
  void commit();

 private:
  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace halfserve
