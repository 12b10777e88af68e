// Read-only file mappings shared by every reader of untrusted files (zip / .pt2 / .ep
// archives, engine files).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ember/file.h"

namespace ember {
namespace {

constexpr size_t kHugePageBytes = size_t{2} << 20;

struct Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr != nullptr && size > 0) munmap(addr, size);
  }
};

}  // namespace

std::shared_ptr<Storage> map_file_readonly(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EMBER_CHECK(fd >= 0, ErrorCode::kIo, path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail(ErrorCode::kIo, path, ": cannot stat: ", std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorCode::kIo, path, ": not a regular file");
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->size = static_cast<size_t>(st.st_size);
  if (mapping->size == 0) {
    ::close(fd);
    return Storage::borrow(mapping.get(), 0, mapping);
  }
  void* addr = mmap(nullptr, mapping->size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  ::close(fd);
  EMBER_CHECK(addr != MAP_FAILED, ErrorCode::kIo, path, ": cannot mmap ", mapping->size, " bytes: ", std::strerror(e));
  mapping->addr = addr;
  // Transparent huge pages for what the page cache does not hold yet: where the file is read
  // from disk through this mapping, the kernel then reads it in 2 MiB folios, each mapped by
  // one page-table entry, and every later mapping of the file (this process's or the next
  // one's) faults it in 2 MiB at a time instead of 4 KiB at a time. Pages already cached stay
  // as they are. A request only: where the kernel or the file system has no large folios
  // for files, nothing changes.
  if (mapping->size >= kHugePageBytes) madvise(addr, mapping->size, MADV_HUGEPAGE);
  return Storage::borrow(addr, mapping->size, mapping);
}

}  // namespace ember
