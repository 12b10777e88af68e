#include "program/json_read.h"

#include <cmath>
#include <limits>

namespace ember::ir::detail {

const char* json_kind(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::object: return "object";
    case Json::value_t::array: return "array";
    case Json::value_t::string: return "string";
    case Json::value_t::boolean: return "boolean";
    case Json::value_t::number_integer: return "integer";
    case Json::value_t::number_unsigned: return "integer";
    case Json::value_t::number_float: return "float";
    case Json::value_t::binary: return "binary";
    case Json::value_t::discarded: return "nothing";
  }
  return "unknown";
}

void type_error(const Where& w, std::string_view expected, const Json& found) {
  fail(ErrorCode::kCorrupt, w.str(), ": expected ", expected, ", found ", json_kind(found));
}

const Json& expect_object(const Json& j, const Where& w) {
  if (!j.is_object()) type_error(w, "an object", j);
  return j;
}

const Json& expect_array(const Json& j, const Where& w) {
  if (!j.is_array()) type_error(w, "an array", j);
  return j;
}

const Json& require(const Json& obj, const char* key, const Where& w) {
  auto it = obj.find(key);
  if (it == obj.end()) fail(ErrorCode::kCorrupt, w.str(), ": missing field '", key, "'");
  return *it;
}

const Json* optional(const Json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

int64_t read_int(const Json& j, const Where& w, std::string_view what) {
  if (j.is_number_integer() && !j.is_number_unsigned()) return j.get<int64_t>();
  if (j.is_number_unsigned()) {
    uint64_t u = j.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(ErrorCode::kCorrupt, w.str(), ": integer ", u, " does not fit in 64 bits");
    return static_cast<int64_t>(u);
  }
  type_error(w, what, j);
}

int32_t read_int32(const Json& j, const Where& w, std::string_view what) {
  int64_t v = read_int(j, w, what);
  if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
    fail(ErrorCode::kCorrupt, w.str(), ": integer ", v, " out of the 32-bit range");
  return static_cast<int32_t>(v);
}

double read_float(const Json& j, const Where& w) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    if (s == "Infinity" || s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity" || s == "-inf") return -std::numeric_limits<double>::infinity();
    if (s == "NaN" || s == "nan") return std::numeric_limits<double>::quiet_NaN();
    fail(ErrorCode::kCorrupt, w.str(), ": expected a float, found string '", s, "'");
  }
  type_error(w, "a float", j);
}

bool read_bool(const Json& j, const Where& w) {
  if (!j.is_boolean()) type_error(w, "a boolean", j);
  return j.get<bool>();
}

std::string read_string(const Json& j, const Where& w) {
  if (!j.is_string()) type_error(w, "a string", j);
  return j.get<std::string>();
}

Json float_to_json(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  return v;
}

Json leftovers(const Json& obj, std::initializer_list<const char*> known) {
  Json out;  // null unless something is left over
  for (const auto& [k, v] : obj.items()) {
    bool is_known = false;
    for (const char* name : known) {
      if (k == name) {
        is_known = true;
        break;
      }
    }
    if (!is_known) {
      if (out.is_null()) out = Json::object();
      out.get_ref<Json::object_t&>().emplace_back(k, v);
    }
  }
  return out;
}

void append_unknown(Json& out, const Json& unknown) {
  if (!unknown.is_object()) return;
  for (const auto& [k, v] : unknown.items()) out[k] = v;
}

const std::string& union_tag(const Json& j, const Where& w, std::string_view what, std::string_view options) {
  if (!j.is_object()) type_error(w, cat("a ", what, " object"), j);
  if (j.size() != 1) {
    std::string found;
    for (const auto& [k, v] : j.items()) found += (found.empty() ? "" : ", ") + k;
    fail(ErrorCode::kCorrupt, w.str(), ": expected exactly one of {", options, "} in ", what, ", found ", j.size(),
         " keys", found.empty() ? "" : cat(" (", found, ")"));
  }
  return j.begin().key();
}

void unknown_tag(const Where& w, std::string_view what, const std::string& tag) {
  fail(ErrorCode::kUnsupported, w.str(), ": unknown ", what, " kind '", tag, "'");
}

}  // namespace ember::ir::detail
