// Pytree TreeSpecs as torch.utils._pytree.treespec_dumps writes them (protocol 1):
//   [1, {"type": "builtins.dict", "context": "[\"out\", \"aux\"]", "children_spec": [...]}]
// A leaf is {"type": null, "context": null, "children_spec": []}; the context of any other
// node is itself JSON text (json.dumps of the node's context).
#include <string>

#include "ember/error.h"
#include "ember/program.h"
#include "program/json_read.h"

namespace ember::ir {

using detail::Where;

size_t TreeSpec::num_leaves() const {
  if (kind == Kind::kLeaf) return 1;
  size_t n = 0;
  for (const auto& c : children) n += c.num_leaves();
  return n;
}

namespace {

TreeSpec::Kind kind_of_type(const std::string& type) {
  if (type == "builtins.NoneType") return TreeSpec::Kind::kNone;
  if (type == "builtins.tuple") return TreeSpec::Kind::kTuple;
  if (type == "builtins.list") return TreeSpec::Kind::kList;
  if (type == "builtins.dict") return TreeSpec::Kind::kDict;
  if (type == "collections.namedtuple") return TreeSpec::Kind::kNamedTuple;
  if (type == "collections.OrderedDict") return TreeSpec::Kind::kOrderedDict;
  if (type == "collections.defaultdict") return TreeSpec::Kind::kDefaultDict;
  return TreeSpec::Kind::kOther;
}

// Types without their own context serializer store json.dumps(context) as a string;
// namedtuple (the class name), defaultdict (an object) and types registered elsewhere
// store what their to_dumpable_context returned, which Ember keeps verbatim.
bool context_is_json_text(TreeSpec::Kind k) {
  switch (k) {
    case TreeSpec::Kind::kNone:
    case TreeSpec::Kind::kTuple:
    case TreeSpec::Kind::kList:
    case TreeSpec::Kind::kDict:
    case TreeSpec::Kind::kOrderedDict: return true;
    default: return false;
  }
}

TreeSpec read_node(const Json& j, const Where& w) {
  detail::expect_object(j, w);
  TreeSpec spec;
  const Json& type = detail::require(j, "type", w);
  const Json& context = detail::require(j, "context", w);
  const Json& children = detail::expect_array(detail::require(j, "children_spec", w), w.field("children_spec"));
  if (type.is_null()) {
    spec.kind = TreeSpec::Kind::kLeaf;
    if (!context.is_null()) detail::type_error(w.field("context"), "null for a leaf", context);
    if (!children.empty()) fail(ErrorCode::kCorrupt, w.str(), ": a leaf has ", children.size(), " children");
    return spec;
  }
  spec.type = detail::read_string(type, w.field("type"));
  spec.kind = kind_of_type(spec.type);
  if (context_is_json_text(spec.kind)) {
    if (!context.is_null()) {
      std::string ctx_where = w.field("context").str();
      spec.context = parse_json(detail::read_string(context, w.field("context")), ctx_where);
    }
  } else {
    spec.context = context;  // a registered type's own dumpable context, kept as written
  }
  spec.children.reserve(children.size());
  for (size_t i = 0; i < children.size(); ++i) spec.children.push_back(read_node(children[i], w.field("children_spec").index(i)));

  switch (spec.kind) {
    case TreeSpec::Kind::kNone:
      if (!spec.children.empty()) fail(ErrorCode::kCorrupt, w.str(), ": a None node has ", spec.children.size(), " children");
      break;
    case TreeSpec::Kind::kDict:
    case TreeSpec::Kind::kOrderedDict:
      if (!spec.context.is_array() || spec.context.size() != spec.children.size())
        fail(ErrorCode::kCorrupt, w.str(), ": ", spec.type, " context must list one key per child (", spec.children.size(),
             " children), found ", spec.context.dump(-1, ' ', false, Json::error_handler_t::replace));
      break;
    case TreeSpec::Kind::kNamedTuple:
      if (!spec.context.is_string())
        detail::type_error(w.field("context"), "the namedtuple class name as a JSON string", spec.context);
      break;
    default: break;
  }
  return spec;
}

Json node_to_json(const TreeSpec& spec) {
  Json out = Json::object();
  if (spec.kind == TreeSpec::Kind::kLeaf) {
    out["type"] = nullptr;
    out["context"] = nullptr;
    out["children_spec"] = Json::array();
    return out;
  }
  out["type"] = spec.type;
  out["context"] = context_is_json_text(spec.kind) ? Json(python_json_dumps(spec.context)) : spec.context;
  Json children = Json::array();
  for (const auto& c : spec.children) children.push_back(node_to_json(c));
  out["children_spec"] = std::move(children);
  return out;
}

// A dict key as Python prints it: 'out' for strings, the JSON text for anything else.
std::string key_str(const Json& k) {
  if (k.is_string()) return "'" + k.get<std::string>() + "'";
  return python_json_dumps(k);
}

void render(const TreeSpec& s, std::string& out) {
  auto children = [&](const char* open, const char* close) {
    out += open;
    for (size_t i = 0; i < s.children.size(); ++i) {
      if (i) out += ", ";
      render(s.children[i], out);
    }
    out += close;
  };
  auto dict = [&]() {
    out += '{';
    for (size_t i = 0; i < s.children.size(); ++i) {
      if (i) out += ", ";
      out += s.context.is_array() && i < s.context.size() ? key_str(s.context[i]) : "?";
      out += ": ";
      render(s.children[i], out);
    }
    out += '}';
  };
  switch (s.kind) {
    case TreeSpec::Kind::kLeaf: out += '*'; return;
    case TreeSpec::Kind::kNone: out += "None"; return;
    case TreeSpec::Kind::kTuple:
      children("(", s.children.size() == 1 ? ",)" : ")");
      return;
    case TreeSpec::Kind::kList: children("[", "]"); return;
    case TreeSpec::Kind::kDict: dict(); return;
    case TreeSpec::Kind::kOrderedDict:
      out += "OrderedDict(";
      dict();
      out += ')';
      return;
    case TreeSpec::Kind::kDefaultDict:
      out += "defaultdict(";
      children("[", "]");
      out += ')';
      return;
    case TreeSpec::Kind::kNamedTuple: {
      std::string cls = s.context.is_string() ? s.context.get<std::string>() : "namedtuple";
      out += cls.substr(cls.rfind('.') == std::string::npos ? 0 : cls.rfind('.') + 1);
      children("(", ")");
      return;
    }
    case TreeSpec::Kind::kOther:
      out += s.type;
      children("(", ")");
      return;
  }
}

}  // namespace

TreeSpec parse_treespec(std::string_view text, const std::string& where) {
  Json root = parse_json(text, where);
  const Where w{&where, ""};
  if (!root.is_array() || root.size() != 2)
    fail(ErrorCode::kCorrupt, where, ": expected a treespec [protocol, node], found ", detail::json_kind(root),
         root.is_array() ? cat(" of ", root.size(), " elements") : std::string());
  int64_t protocol = detail::read_int(root[0], w.index(0), "an integer protocol");
  if (protocol != 1) fail(ErrorCode::kUnsupported, where, ": treespec protocol ", protocol, " (supported: 1)");
  return read_node(root[1], w.index(1));
}

std::string serialize_treespec(const TreeSpec& spec) {
  Json root = Json::array();
  root.push_back(1);
  root.push_back(node_to_json(spec));
  return python_json_dumps(root);
}

std::string treespec_str(const TreeSpec& spec) {
  std::string out;
  render(spec, out);
  return out;
}

}  // namespace ember::ir
