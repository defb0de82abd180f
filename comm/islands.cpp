#include "comm/islands.h"

#include <algorithm>
#include <numeric>

namespace lowband::comm {

Islands islandsOf(const std::vector<std::string>& class_of_rank,
                  const std::vector<std::string>& host_of_rank) {
  const auto n = static_cast<int>(class_of_rank.size());
  Islands out;
  std::vector<std::string> hosts;  // in order of first rank
  std::vector<int> host_index(n);
  for (int r = 0; r < n; ++r) {
    auto c = std::find(out.classes.begin(), out.classes.end(), class_of_rank[r]);
    if (c == out.classes.end()) {
      out.classes.push_back(class_of_rank[r]);
      out.ranks.push_back(0);
      c = out.classes.end() - 1;
    }
    out.island_of_rank.push_back(static_cast<int>(c - out.classes.begin()));
    ++out.ranks[out.island_of_rank.back()];
    auto h = std::find(hosts.begin(), hosts.end(), host_of_rank[r]);
    if (h == hosts.end()) {
      hosts.push_back(host_of_rank[r]);
      h = hosts.end() - 1;
    }
    host_index[r] = static_cast<int>(h - hosts.begin());
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    if (out.island_of_rank[a] != out.island_of_rank[b])
      return out.island_of_rank[a] < out.island_of_rank[b];
    return host_index[a] < host_index[b];
  });
  out.position.assign(n, 0);
  for (int i = 0; i < n; ++i) out.position[order[i]] = i;
  return out;
}

}  // namespace lowband::comm
