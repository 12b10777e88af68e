// Typed, path-tracking access to a parsed JSON document. Every failure throws
// ember::Error naming the source, the JSON path, what was expected and what was found.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "ember/error.h"
#include "ember/program.h"

namespace ember::ir::detail {

// The place being read: the source (file) and the JSON path inside it.
struct Where {
  const std::string* source;
  std::string path;

  // Paths are built for every field read, so plain string appends (not cat's stream).
  Where field(std::string_view key) const {
    std::string p;
    p.reserve(path.size() + 1 + key.size());
    if (!path.empty()) (p += path) += '.';
    p += key;
    return Where{source, std::move(p)};
  }
  Where index(size_t i) const { return Where{source, path + '[' + std::to_string(i) + ']'}; }
  std::string str() const { return path.empty() ? *source : cat(*source, ": ", path); }
};

// "string", "integer", "float", "object", ... for messages.
const char* json_kind(const Json& j);

[[noreturn]] void type_error(const Where& w, std::string_view expected, const Json& found);

const Json& expect_object(const Json& j, const Where& w);
const Json& expect_array(const Json& j, const Where& w);
// A required field of an object (kCorrupt "missing field" when absent).
const Json& require(const Json& obj, const char* key, const Where& w);
// An optional field: nullptr when absent.
const Json* optional(const Json& obj, const char* key);

int64_t read_int(const Json& j, const Where& w, std::string_view what = "an integer");
int32_t read_int32(const Json& j, const Where& w, std::string_view what = "an integer");
double read_float(const Json& j, const Where& w);
bool read_bool(const Json& j, const Where& w);
std::string read_string(const Json& j, const Where& w);

// Writes a float the way PyTorch does: non-finite values as "NaN" / "Infinity" / "-Infinity".
Json float_to_json(double v);

// The fields of `obj` whose keys are not in `known`, as an object; null when none.
Json leftovers(const Json& obj, std::initializer_list<const char*> known);
// Appends the fields of `unknown` (an object or null) to `out`.
void append_unknown(Json& out, const Json& unknown);

// A tagged union: checks that `j` is an object with exactly one key and returns it.
// `options` lists the tags for the message ("as_int, as_expr"), `what` names the union.
const std::string& union_tag(const Json& j, const Where& w, std::string_view what, std::string_view options);
[[noreturn]] void unknown_tag(const Where& w, std::string_view what, const std::string& tag);

}  // namespace ember::ir::detail
