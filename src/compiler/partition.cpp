// Capability-based partitioning (as Torch-TensorRT's): supported nodes are grouped into
// maximal blocks such that contracting every block into one node keeps the graph acyclic —
// a node outside a block may never read from the block and feed it again (directly or
// through other blocks). Blocks smaller than min_block_size are dissolved: their nodes run
// in the interpreter.
//
// Algorithm: nodes are visited in graph (topological) order; a supported node starts a
// block and merges with the blocks of its producers when the union stays acyclic. Then
// independent blocks (e.g. two branches reading the same input) are merged pairwise while
// that stays acyclic. Each acyclicity check is a search from the union's out-edges over the
// contracted graph (reaching a node of another block reaches all of that block); reaching
// the union again means a cycle.
#include <algorithm>
#include <numeric>

#include "compiler/compiler_internal.h"
#include "ember/error.h"

namespace ember::compiler {
namespace {

class Partitioner {
 public:
  Partitioner(const std::vector<std::vector<size_t>>& edges) : edges_(edges), n_(edges.size()) {
    part_.assign(n_, -1);
  }

  // Whether contracting `members` into one node (with every other block contracted too)
  // would create a cycle.
  bool creates_cycle(const std::vector<size_t>& members) const {
    std::vector<char> in_u(n_, 0), seen(n_, 0);
    for (size_t m : members) in_u[m] = 1;
    std::vector<size_t> stack;
    for (size_t m : members)
      for (size_t v : edges_[m])
        if (!in_u[v]) stack.push_back(v);
    while (!stack.empty()) {
      size_t m = stack.back();
      stack.pop_back();
      if (in_u[m]) return true;
      if (seen[m]) continue;
      seen[m] = 1;
      if (part_[m] >= 0)
        for (size_t q : blocks_[part_[m]])
          if (!seen[q]) stack.push_back(q);
      for (size_t v : edges_[m]) stack.push_back(v);
    }
    return false;
  }

  int new_block(size_t node) {
    blocks_.push_back({node});
    part_[node] = static_cast<int>(blocks_.size() - 1);
    return part_[node];
  }

  // Moves block b into block a.
  void merge(int a, int b) {
    for (size_t m : blocks_[b]) part_[m] = a;
    blocks_[a].insert(blocks_[a].end(), blocks_[b].begin(), blocks_[b].end());
    std::sort(blocks_[a].begin(), blocks_[a].end());
    blocks_[b].clear();
  }

  bool try_merge(int a, int b) {
    if (a == b || blocks_[a].empty() || blocks_[b].empty()) return false;
    std::vector<size_t> u = blocks_[a];
    u.insert(u.end(), blocks_[b].begin(), blocks_[b].end());
    if (creates_cycle(u)) return false;
    merge(a, b);
    return true;
  }

  const std::vector<std::vector<size_t>>& edges_;
  size_t n_;
  std::vector<int> part_;
  std::vector<std::vector<size_t>> blocks_;
};

}  // namespace

PartitionResult partition_graph(const std::vector<bool>& supported, const std::vector<std::vector<size_t>>& edges,
                                 const std::vector<std::string>& reasons, int min_block_size) {
  const size_t n = supported.size();
  EMBER_CHECK(edges.size() == n && reasons.size() == n, ErrorCode::kInternal, "partition_graph: size mismatch");
  for (size_t i = 0; i < n; ++i)
    for (size_t v : edges[i])
      EMBER_CHECK(v > i && v < n, ErrorCode::kInternal, "partition_graph: edge ", i, " -> ", v,
                  " is not in topological order");
  std::vector<std::vector<size_t>> preds(n);
  for (size_t i = 0; i < n; ++i)
    for (size_t v : edges[i]) preds[v].push_back(i);

  Partitioner p(edges);
  for (size_t i = 0; i < n; ++i) {
    if (!supported[i]) continue;
    int cur = p.new_block(i);
    std::vector<int> cands;
    for (size_t q : preds[i])
      if (p.part_[q] >= 0 && std::find(cands.begin(), cands.end(), p.part_[q]) == cands.end()) cands.push_back(p.part_[q]);
    std::stable_sort(cands.begin(), cands.end(),
                     [&](int a, int b) { return p.blocks_[a].size() > p.blocks_[b].size(); });
    for (int c : cands) {
      if (p.try_merge(c, cur)) cur = c;
    }
  }
  // Merge independent blocks while that stays acyclic.
  for (bool changed = true; changed;) {
    changed = false;
    std::vector<int> order;
    for (size_t b = 0; b < p.blocks_.size(); ++b)
      if (!p.blocks_[b].empty()) order.push_back(static_cast<int>(b));
    std::sort(order.begin(), order.end(), [&](int a, int b) { return p.blocks_[a][0] < p.blocks_[b][0]; });
    for (size_t x = 0; x < order.size() && !changed; ++x)
      for (size_t y = x + 1; y < order.size() && !changed; ++y) changed = p.try_merge(order[x], order[y]);
  }

  PartitionResult result;
  std::vector<std::vector<size_t>> blocks;
  for (auto& b : p.blocks_)
    if (!b.empty()) blocks.push_back(b);
  std::sort(blocks.begin(), blocks.end(), [](const auto& a, const auto& b) { return a[0] < b[0]; });
  for (auto& b : blocks) {
    if (static_cast<int>(b.size()) < min_block_size) {
      for (size_t m : b)
        result.fallback_reasons[m] = cat("in a block of ", b.size(), " supported node", b.size() == 1 ? "" : "s",
                                         ", fewer than min_block_size ", min_block_size);
      continue;
    }
    result.partitions.push_back(Partition{b});
  }
  for (size_t i = 0; i < n; ++i)
    if (!supported[i]) result.fallback_reasons[i] = reasons[i].empty() ? "not supported" : reasons[i];
  return result;
}

void prune_constant_outputs(const GraphAnalysis& g, PartitionResult& result, int min_block_size) {
  std::vector<Partition> kept;
  for (Partition& part : result.partitions) {
    std::set<size_t> inside(part.nodes.begin(), part.nodes.end());
    std::set<size_t> removed;
    // Constant nodes whose value is read outside, then (closure) the constant nodes they read.
    for (size_t n : part.nodes) {
      const NodeInfo& info = g.nodes[n];
      if (info.kind != NodeKind::kConstant) continue;
      for (int v : info.tensor_outputs) {
        bool outside = g.graph_outputs.count(v) > 0;
        for (size_t u : g.users[v]) outside = outside || !inside.count(u);
        if (outside) removed.insert(n);
      }
    }
    for (bool grew = true; grew;) {
      grew = false;
      for (size_t n : std::set<size_t>(removed))
        for (int v : g.nodes[n].tensor_inputs) {
          int p = g.producer[v];
          if (p >= 0 && inside.count(p) && g.nodes[p].kind == NodeKind::kConstant && removed.insert(p).second) grew = true;
        }
    }
    for (size_t n : removed) result.fallback_reasons[n] = "constant computation read outside the engine";
    Partition rest;
    for (size_t n : part.nodes)
      if (!removed.count(n)) rest.nodes.push_back(n);
    if (static_cast<int>(rest.nodes.size()) < min_block_size || rest.nodes.empty()) {
      for (size_t n : rest.nodes)
        result.fallback_reasons[n] = cat("in a block of ", rest.nodes.size(), " supported nodes, fewer than min_block_size ",
                                         min_block_size);
      continue;
    }
    kept.push_back(std::move(rest));
  }
  result.partitions = std::move(kept);
}

}  // namespace ember::compiler
