// safetensors reader and writer (see include/ember/safetensors.h).
#include "ember/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>

#include "ember/error.h"
#include "ember/program.h"

namespace ember {

const Tensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& [key, tensor] : tensors)
    if (key == name) return &tensor;
  return nullptr;
}

namespace {

using Json = ir::Json;

struct HeaderEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin;
  uint64_t end;
};

DType parse_dtype(const Json& j, const std::string& where) {
  EMBER_CHECK(j.is_string(), ErrorCode::kCorrupt, where, ": \"dtype\" must be a string, found ", j.dump());
  std::string name = j.get<std::string>();
  std::optional<DType> d = dtype_from_name(name);
  // Only the safetensors spellings ("F32", "I64", ...) are valid here.
  const char* canonical = d ? dtype_safetensors_name(*d) : nullptr;
  EMBER_CHECK(canonical && name == canonical, ErrorCode::kCorrupt, where, ": unknown dtype \"", name,
              "\" (expected a safetensors dtype such as F32, F16, BF16, I64, I32, U8, BOOL)");
  return *d;
}

uint64_t parse_u64(const Json& j, const std::string& where, const char* what) {
  EMBER_CHECK(j.is_number_unsigned() || (j.is_number_integer() && j.get<int64_t>() >= 0), ErrorCode::kCorrupt, where,
              ": ", what, " must be a non-negative integer, found ", j.dump());
  return j.get<uint64_t>();
}

HeaderEntry parse_entry(const std::string& name, const Json& j, const std::string& source) {
  std::string where = cat(source, ": tensor '", name, "'");
  EMBER_CHECK(j.is_object(), ErrorCode::kCorrupt, where, ": expected an object, found ", j.dump());
  for (const char* field : {"dtype", "shape", "data_offsets"})
    EMBER_CHECK(j.contains(field), ErrorCode::kCorrupt, where, ": missing field \"", field, "\"");
  for (const auto& [key, _] : j.items())
    EMBER_CHECK(key == "dtype" || key == "shape" || key == "data_offsets", ErrorCode::kCorrupt, where,
                ": unexpected field \"", key, "\"");
  HeaderEntry e;
  e.name = name;
  e.dtype = parse_dtype(j["dtype"], where);
  const Json& shape = j["shape"];
  EMBER_CHECK(shape.is_array(), ErrorCode::kCorrupt, where, ": \"shape\" must be an array, found ", shape.dump());
  EMBER_CHECK(shape.size() <= 64, ErrorCode::kLimitExceeded, where, ": rank ", shape.size(),
              " exceeds the limit of 64");
  for (const Json& s : shape) {
    uint64_t v = parse_u64(s, where, "a shape entry");
    EMBER_CHECK(v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), ErrorCode::kCorrupt, where,
                ": shape entry ", v, " is too large");
    e.shape.push_back(static_cast<int64_t>(v));
  }
  const Json& offsets = j["data_offsets"];
  EMBER_CHECK(offsets.is_array() && offsets.size() == 2, ErrorCode::kCorrupt, where,
              ": \"data_offsets\" must be [begin, end], found ", offsets.dump());
  e.begin = parse_u64(offsets[0], where, "data_offsets[0]");
  e.end = parse_u64(offsets[1], where, "data_offsets[1]");
  EMBER_CHECK(e.begin <= e.end, ErrorCode::kCorrupt, where, ": data_offsets [", e.begin, ", ", e.end,
              "] end before they begin");
  // Byte size implied by dtype x shape, overflow-checked.
  uint64_t bytes = dtype_size(e.dtype);
  for (int64_t s : e.shape) {
    EMBER_CHECK(!__builtin_mul_overflow(bytes, static_cast<uint64_t>(s), &bytes), ErrorCode::kCorrupt, where,
                ": shape ", shape_str(e.shape), " overflows");
  }
  EMBER_CHECK(e.end - e.begin == bytes, ErrorCode::kCorrupt, where, ": data_offsets [", e.begin, ", ", e.end,
              "] span ", e.end - e.begin, " bytes but ", dtype_safetensors_name(e.dtype), " ", shape_str(e.shape),
              " needs ", bytes);
  return e;
}

SafetensorsFile parse(std::shared_ptr<Storage> bytes, const std::string& source) {
  const uint64_t size = bytes->nbytes();
  const uint8_t* data = bytes->data();
  EMBER_CHECK(size >= 8, ErrorCode::kTruncated, source, ": file of ", size,
              " bytes is too short for a safetensors header length (8 bytes)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | data[i];
  EMBER_CHECK(header_len <= kMaxSafetensorsHeader, ErrorCode::kLimitExceeded, source, ": header length ", header_len,
              " exceeds the limit of ", kMaxSafetensorsHeader, " bytes");
  EMBER_CHECK(header_len <= size - 8, ErrorCode::kTruncated, source, ": header length ", header_len,
              " exceeds the file (", size - 8, " bytes after the length)");
  EMBER_CHECK(header_len >= 2, ErrorCode::kCorrupt, source, ": header of ", header_len, " bytes cannot hold a JSON object");
  std::string_view text(reinterpret_cast<const char*>(data + 8), header_len);
  EMBER_CHECK(text.front() == '{', ErrorCode::kCorrupt, source, ": header does not start with '{'");
  Json header = ir::parse_json(text, source + " (header)");
  EMBER_CHECK(header.is_object(), ErrorCode::kCorrupt, source, ": header is not a JSON object");

  SafetensorsFile file;
  std::vector<HeaderEntry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      EMBER_CHECK(value.is_object(), ErrorCode::kCorrupt, source, ": \"__metadata__\" must be an object");
      for (const auto& [mk, mv] : value.items()) {
        EMBER_CHECK(mv.is_string(), ErrorCode::kCorrupt, source, ": \"__metadata__\" value of '", mk,
                    "' must be a string, found ", mv.dump());
        file.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    EMBER_CHECK(!key.empty(), ErrorCode::kCorrupt, source, ": empty tensor name");
    entries.push_back(parse_entry(key, value, source));
  }

  // Tensors must tile the data area exactly: sorted by offset, no gap, no overlap, no tail.
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  std::vector<const HeaderEntry*> order;
  for (const auto& e : entries) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(), [](const HeaderEntry* a, const HeaderEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t expected = 0;
  for (const HeaderEntry* e : order) {
    EMBER_CHECK(e->end <= data_size, ErrorCode::kTruncated, source, ": tensor '", e->name, "': data_offsets [",
                e->begin, ", ", e->end, "] exceed the data area of ", data_size, " bytes");
    EMBER_CHECK(e->begin == expected, ErrorCode::kCorrupt, source, ": tensor '", e->name, "': data starts at ",
                e->begin, " but the previous tensor ends at ", expected,
                e->begin < expected ? " (overlap)" : " (gap)");
    expected = e->end;
  }
  EMBER_CHECK(expected == data_size, ErrorCode::kCorrupt, source, ": tensors cover ", expected,
              " bytes but the data area holds ", data_size, " (trailing bytes)");

  for (const HeaderEntry& e : entries) {
    size_t item = dtype_size(e.dtype);
    uint64_t abs = data_start + e.begin;
    Tensor t;
    if (abs % item == 0 && reinterpret_cast<uintptr_t>(data) % 64 == 0) {
      t = Tensor(bytes, e.dtype, e.shape, contiguous_strides(e.shape), static_cast<int64_t>(abs / item));
    } else {
      t = Tensor::empty(e.shape, e.dtype);
      if (t.nbytes()) std::memcpy(t.raw_data(), data + abs, t.nbytes());
    }
    file.tensors.emplace_back(e.name, std::move(t));
  }
  return file;
}

}  // namespace

SafetensorsFile read_safetensors(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EMBER_CHECK(fd >= 0, ErrorCode::kIo, path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorCode::kIo, path, ": not a regular file");
  }
  std::shared_ptr<Storage> bytes;
  try {
    bytes = Storage::allocate(static_cast<size_t>(st.st_size));
  } catch (...) {
    ::close(fd);
    throw;
  }
  size_t done = 0;
  while (done < bytes->nbytes()) {
    ssize_t n = ::read(fd, bytes->data() + done, bytes->nbytes() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = errno;
      ::close(fd);
      fail(ErrorCode::kIo, path, ": read failed after ", done, " of ", bytes->nbytes(), " bytes",
           n < 0 ? cat(": ", std::strerror(e)) : std::string());
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return parse(std::move(bytes), path);
}

SafetensorsFile read_safetensors_from_memory(std::shared_ptr<Storage> bytes, const std::string& name) {
  EMBER_CHECK(bytes != nullptr, ErrorCode::kInvalidArgument, name, ": no bytes");
  // Copy into aligned owned memory so tensor views are aligned and writable.
  auto copy = Storage::allocate(bytes->nbytes());
  if (bytes->nbytes()) std::memcpy(copy->data(), bytes->data(), bytes->nbytes());
  return parse(std::move(copy), name);
}

std::string serialize_safetensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) {
    Json m = Json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  uint64_t offset = 0;
  std::vector<Tensor> contiguous;
  for (const auto& [name, t] : tensors) {
    EMBER_CHECK(!name.empty() && name != "__metadata__", ErrorCode::kInvalidArgument,
                "invalid safetensors tensor name '", name, "'");
    EMBER_CHECK(!header.contains(name), ErrorCode::kInvalidArgument, "duplicate safetensors tensor name '", name, "'");
    EMBER_CHECK(t.defined(), ErrorCode::kInvalidArgument, "tensor '", name, "' is undefined");
    const char* dt = dtype_safetensors_name(t.dtype());
    EMBER_CHECK(dt != nullptr, ErrorCode::kUnsupported, "tensor '", name, "': dtype ", dtype_name(t.dtype()),
                " has no safetensors name");
    Json entry = Json::object();
    entry["dtype"] = dt;
    entry["shape"] = t.sizes();
    entry["data_offsets"] = {offset, offset + t.nbytes()};
    header[name] = entry;
    offset += t.nbytes();
    contiguous.push_back(t.contiguous());
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-aligned
  std::string out;
  out.reserve(8 + text.size() + offset);
  uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(len >> (8 * i)));
  out += text;
  for (const Tensor& t : contiguous) out.append(static_cast<const char*>(t.raw_data()), t.nbytes());
  return out;
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::string bytes = serialize_safetensors(tensors, metadata);
  std::filesystem::path dest(path);
  std::string dir = dest.has_parent_path() ? dest.parent_path().string() : ".";
  std::string temp = dir + "/." + dest.filename().string() + ".tmpXXXXXX";
  int fd = ::mkstemp(temp.data());
  EMBER_CHECK(fd >= 0, ErrorCode::kIo, path, ": cannot create a temporary file in ", dir, ": ", std::strerror(errno));
  ::fchmod(fd, 0644);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = errno;
      ::close(fd);
      ::unlink(temp.c_str());
      fail(ErrorCode::kIo, path, ": write failed: ", std::strerror(e));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int e = errno;
    ::unlink(temp.c_str());
    fail(ErrorCode::kIo, path, ": fsync/close failed: ", std::strerror(e));
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(temp.c_str());
    fail(ErrorCode::kIo, path, ": cannot rename the temporary file over the destination: ", std::strerror(e));
  }
}

// ---------------------------------------------------------------- reference cases

namespace {

bool parse_index(std::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 9) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (s.size() > 1 && s[0] == '0') return false;
  *out = v;
  return true;
}

// "case3.in.1" -> (3, true, 1).
bool parse_case_key(const std::string& key, int64_t* k, bool* is_input, int64_t* i) {
  if (key.rfind("case", 0) != 0) return false;
  size_t dot1 = key.find('.', 4);
  if (dot1 == std::string::npos) return false;
  size_t dot2 = key.find('.', dot1 + 1);
  if (dot2 == std::string::npos) return false;
  std::string_view kind = std::string_view(key).substr(dot1 + 1, dot2 - dot1 - 1);
  if (kind != "in" && kind != "out") return false;
  *is_input = kind == "in";
  return parse_index(std::string_view(key).substr(4, dot1 - 4), k) &&
         parse_index(std::string_view(key).substr(dot2 + 1), i);
}

}  // namespace

std::optional<std::vector<ReferenceCase>> group_reference_cases(const SafetensorsFile& file,
                                                                const std::string& source) {
  std::map<int64_t, std::pair<std::map<int64_t, Tensor>, std::map<int64_t, Tensor>>> cases;
  size_t matched = 0;
  std::string stray;
  for (const auto& [key, t] : file.tensors) {
    int64_t k, i;
    bool in;
    if (!parse_case_key(key, &k, &in, &i)) {
      if (stray.empty()) stray = key;
      continue;
    }
    ++matched;
    auto& slot = in ? cases[k].first : cases[k].second;
    EMBER_CHECK(slot.emplace(i, t).second, ErrorCode::kCorrupt, source, ": duplicate key '", key, "'");
  }
  if (matched == 0) return std::nullopt;
  EMBER_CHECK(stray.empty(), ErrorCode::kCorrupt, source, ": key '", stray,
              "' does not follow the case{K}.in.{I} / case{K}.out.{J} convention of the other keys");
  std::vector<ReferenceCase> out;
  for (auto& [case_index, io] : cases) {
    const int64_t k = case_index;  // lambdas cannot capture structured bindings (C++20 as clang 14 reads it)
    ReferenceCase c;
    c.index = k;
    auto take = [&](std::map<int64_t, Tensor>& map, std::vector<Tensor>& vec, const char* what) {
      int64_t expect = 0;
      for (auto& [i, t] : map) {
        EMBER_CHECK(i == expect, ErrorCode::kCorrupt, source, ": case ", k, " has key 'case", k, ".", what, ".", i,
                    "' but no 'case", k, ".", what, ".", expect, "'");
        vec.push_back(t);
        ++expect;
      }
    };
    take(io.first, c.inputs, "in");
    take(io.second, c.outputs, "out");
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace ember
