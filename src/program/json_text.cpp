// JSON text in and out with Ember's limits.
//
// nlohmann's own DOM parser for ordered_json checks every new key against all earlier keys
// of the object (linear search), which is quadratic for the large name-keyed tables of big
// graphs. This SAX handler builds the same ordered_json DOM but appends keys directly and
// detects duplicates by a direct search in small objects and a hash set in large ones; it
// also bounds the nesting depth so that no later recursive walk (destruction, dump,
// comparison) can exhaust the stack.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <unordered_set>
#include <vector>

#include "ember/error.h"
#include "ember/program.h"

namespace ember::ir {
namespace {

class DomBuilder : public nlohmann::json_sax<Json> {
 public:
  explicit DomBuilder(Json& root) : root_(root) {}

  bool null() override { return put(Json(nullptr)); }
  bool boolean(bool v) override { return put(Json(v)); }
  bool number_integer(number_integer_t v) override { return put(Json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return put(Json(v)); }
  bool number_float(number_float_t v, const string_t&) override { return put(Json(v)); }
  bool string(string_t& v) override { return put(Json(std::move(v))); }
  bool binary(binary_t& v) override { return put(Json::binary(std::move(v))); }

  bool start_object(std::size_t) override {
    Json* j = open(Json::object());
    if (!j) return false;
    stack_.push_back(Frame{j, {}, {}});
    return true;
  }
  bool key(string_t& k) override {
    Frame& f = stack_.back();
    // Small objects (almost all of them) are searched directly; a hash set takes over once an
    // object has kLinearKeys keys, so that big name-keyed tables stay linear overall.
    const auto& obj = f.value->get_ref<const Json::object_t&>();
    bool duplicate = false;
    if (obj.size() < kLinearKeys) {
      duplicate = std::any_of(obj.begin(), obj.end(), [&](const auto& kv) { return kv.first == k; });
    } else {
      if (f.keys.empty())
        for (const auto& kv : obj) f.keys.insert(kv.first);
      duplicate = !f.keys.insert(k).second;
    }
    if (duplicate) {
      error_ = cat("duplicate key '", k, "'");
      return false;
    }
    f.pending_key = std::move(k);
    return true;
  }
  bool end_object() override {
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    Json* j = open(Json::array());
    if (!j) return false;
    stack_.push_back(Frame{j, {}, {}});
    return true;
  }
  bool end_array() override {
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) override {
    error_ = ex.what();
    error_position_ = position;
    return false;
  }

  const std::string& error() const { return error_; }
  std::size_t error_position() const { return error_position_; }
  bool depth_exceeded() const { return depth_exceeded_; }

 private:
  static constexpr size_t kLinearKeys = 16;

  struct Frame {
    Json* value;
    std::unordered_set<std::string> keys;  // filled once the object has kLinearKeys keys
    std::string pending_key;
  };

  // Places a value at the current position; returns where it now lives.
  Json* place(Json&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Frame& f = stack_.back();
    if (f.value->is_array()) {
      auto& arr = f.value->get_ref<Json::array_t&>();
      arr.push_back(std::move(v));
      return &arr.back();
    }
    // ordered_map is a vector of pairs: append without its linear duplicate search. Its pairs
    // have a const key, so the vector's own growth would deep-copy every value placed so far;
    // grow it here instead, copying the keys and moving the values.
    auto& obj = f.value->get_ref<Json::object_t&>();
    if (obj.size() == obj.capacity()) {
      Json::object_t::Container bigger;
      bigger.reserve(std::max<size_t>(8, obj.capacity() * 2));
      for (auto& kv : obj) bigger.emplace_back(kv.first, std::move(kv.second));
      static_cast<Json::object_t::Container&>(obj).swap(bigger);
    }
    obj.emplace_back(std::move(f.pending_key), std::move(v));
    return &obj.back().second;
  }
  bool put(Json&& v) {
    place(std::move(v));
    return true;
  }
  Json* open(Json&& v) {
    if (stack_.size() >= static_cast<size_t>(kMaxJsonDepth)) {
      depth_exceeded_ = true;
      error_ = cat("nesting deeper than ", kMaxJsonDepth, " levels");
      return nullptr;
    }
    return place(std::move(v));
  }

  Json& root_;
  std::vector<Frame> stack_;
  std::string error_;
  std::size_t error_position_ = 0;
  bool depth_exceeded_ = false;
};

void dump_python(const Json& j, std::string& out) {
  switch (j.type()) {
    case Json::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [k, v] : j.items()) {
        if (!first) out += ", ";
        first = false;
        out += Json(k).dump(-1, ' ', /*ensure_ascii=*/true, Json::error_handler_t::replace);
        out += ": ";
        dump_python(v, out);
      }
      out += '}';
      return;
    }
    case Json::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& v : j) {
        if (!first) out += ", ";
        first = false;
        dump_python(v, out);
      }
      out += ']';
      return;
    }
    case Json::value_t::number_float: {
      double d = j.get<double>();
      if (std::isnan(d)) {
        out += "NaN";
      } else if (std::isinf(d)) {
        out += d > 0 ? "Infinity" : "-Infinity";
      } else {
        out += j.dump();
      }
      return;
    }
    default:
      out += j.dump(-1, ' ', /*ensure_ascii=*/true, Json::error_handler_t::replace);
      return;
  }
}

}  // namespace

Json parse_json(std::string_view text, const std::string& source) {
  Json root;
  DomBuilder builder(root);
  bool ok = false;
  try {
    ok = Json::sax_parse(text.begin(), text.end(), &builder, nlohmann::detail::input_format_t::json,
                         /*strict=*/true, /*ignore_comments=*/false);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::kCorrupt, source, ": malformed JSON: ", e.what());
  }
  if (!ok) {
    if (builder.depth_exceeded()) fail(ErrorCode::kLimitExceeded, source, ": JSON ", builder.error());
    if (builder.error_position() != 0 || builder.error().rfind("[json.exception", 0) == 0)
      fail(ErrorCode::kCorrupt, source, ": malformed JSON at byte ", builder.error_position(), ": ",
           builder.error());
    fail(ErrorCode::kCorrupt, source, ": malformed JSON: ", builder.error());
  }
  return root;
}

std::string python_json_dumps(const Json& j) {
  std::string out;
  dump_python(j, out);
  return out;
}

}  // namespace ember::ir
