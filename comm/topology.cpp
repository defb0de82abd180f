#include "comm/topology.h"

#include <algorithm>

#include "comm/mpi_runtime.h"

namespace lowband::comm {

Topology::Topology(std::vector<TierSpec> tiers, int64_t world_size, int r)
    : world_size_(world_size), rank_(r), tiers_(std::move(tiers)) {
  if (tiers_.empty()) tiers_.push_back({"world", 0, 0, 0});
  int64_t fixed = 1;
  for (std::size_t i = 0; i < tiers_.size(); ++i) {
    if (tiers_[i].size < 0 || (tiers_[i].size == 0 && i + 1 != tiers_.size()))
      LB_THROW(CommError, "tier '" + tiers_[i].name + "': only the outermost tier may be `rest`");
    if (tiers_[i].size > 0) fixed *= tiers_[i].size;
  }
  if (world_size % fixed != 0 || (tiers_.back().size > 0 && fixed != world_size))
    LB_THROW(CommError, "tier sizes multiply to " + std::to_string(fixed) + ", which does not " +
                            (tiers_.back().size > 0 ? "equal" : "divide") + " the world of " +
                            std::to_string(world_size) + " ranks (outermost tier '" +
                            tiers_.back().name + "')");
  int64_t stride = 1;
  for (const TierSpec& t : tiers_) {
    const int64_t k = t.size > 0 ? t.size : world_size / fixed;
    sizes_.push_back(k);
    strides_.push_back(stride);
    coords_.push_back(static_cast<int>((r / stride) % k));
    stride *= k;
  }
}

std::unique_ptr<Topology> Topology::planned(int64_t world_size, int r, std::vector<TierSpec> tiers,
                                            int ranks_per_host) {
  std::unique_ptr<Topology> t(new Topology(std::move(tiers), world_size, r));
  const int L = t->levels();
  for (int i = 0; i < L; ++i) {
    t->levels_.push_back(std::make_unique<PlannedCommunicator>(
        t->coords_[i], static_cast<int>(t->sizes_[i]), t->tiers_[i].name));
    t->links_.push_back(std::make_unique<LinkCommunicator>(*t->levels_.back(), t->tiers_[i].name));
  }
  t->makeInnerOuter();
  t->blockHosts(ranks_per_host > 0 ? ranks_per_host : t->sizes_[0], world_size, r);
  return t;
}

void Topology::makeInnerOuter() {
  inner_.resize(levels() + 1);
  outer_.resize(levels());
  for (int t = 1; t <= levels(); ++t)
    inner_[t] = span(0, t, "below " + (t < levels() ? tiers_[t].name : std::string("world")));
  for (int t = 0; t < levels(); ++t) outer_[t] = span(t, levels(), "across " + tiers_[t].name);
}

std::unique_ptr<Communicator> Topology::span(int begin, int end, const std::string& name) const {
  if (begin < 0 || begin >= end || end > levels())
    LB_THROW(CommError, "levels [" + std::to_string(begin) + ", " + std::to_string(end) +
                            ") outside the " + std::to_string(levels()) + " tiers");
  const int64_t below = strides_[begin];
  const int64_t through = end < levels() ? strides_[end] : world_size_;
  const auto within = static_cast<int>((rank_ / below) % (through / below));  // composite order
  if (!world_)
    return std::make_unique<PlannedCommunicator>(within, static_cast<int>(through / below), name);
  // Color: the rank with this span's coordinates zeroed, the same for all members.
  return world_->split(static_cast<int>(rank_ - within * below), within, name);
}

void Topology::blockHosts(int64_t per_host, int64_t world_size, int r) {
  if (world_size % per_host != 0)
    LB_THROW(CommError, "ranks_per_host " + std::to_string(per_host) +
                            " does not divide the world of " + std::to_string(world_size));
  host_ = static_cast<int>(r / per_host);
  hosts_ = static_cast<int>(world_size / per_host);
}

Topology::Topology(const MpiCommunicator& world, std::vector<TierSpec> tiers, int ranks_per_host,
                   bool emulate)
    : Topology(std::move(tiers), world.size(), world.rank()) {
  const int64_t world_size = world.size();
  const int r = world.rank();
  const std::vector<int64_t>& strides = strides_;
  // Every split below is collective: all ranks run them in this order.
  for (int i = 0; i < levels(); ++i) {
    const int color = static_cast<int>(r - coords_[i] * strides[i]);
    levels_.push_back(world.split(color, coords_[i], tiers_[i].name));
    const LinkModel model = emulate
                                ? LinkModel{tiers_[i].bandwidth, tiers_[i].latency,
                                            std::chrono::duration<double>(world.timeout()).count()}
                                : LinkModel{};
    links_.push_back(std::make_unique<LinkCommunicator>(*levels_.back(), tiers_[i].name, model));
  }
  world_ = &world;
  makeInnerOuter();
  // Hosts: consecutive blocks of ranks_per_host ranks when given (one machine standing in for
  // several), else the shared-memory domains MPI reports.
  if (ranks_per_host > 0) {
    blockHosts(ranks_per_host, world_size, r);
  } else {
    MPI_Comm node = MPI_COMM_NULL;  // ordered by world rank: node rank 0 is the lowest
    LB_MPI_CHECK(
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, r, MPI_INFO_NULL, &node));
    int node_rank = 0;
    LB_MPI_CHECK(MPI_Comm_rank(node, &node_rank));
    // A host's index = the number of host leaders (node rank 0) with a lower world rank.
    int leader = node_rank == 0 ? 1 : 0, before = 0, total = 0;
    LB_MPI_CHECK(MPI_Exscan(&leader, &before, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    LB_MPI_CHECK(MPI_Allreduce(&leader, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    if (r == 0) before = 0;  // MPI_Exscan leaves rank 0's result undefined
    LB_MPI_CHECK(MPI_Bcast(&before, 1, MPI_INT, 0, node));
    MPI_Comm_free(&node);
    host_ = before;
    hosts_ = total;
  }
}

std::map<std::string, OpTraffic> Topology::tierTraffic() const {
  std::map<std::string, OpTraffic> result;
  for (const auto& link : links_) result[link->name()] = link->traffic().at("total");
  return result;
}

int Topology::tierIndex(const std::string& name) const {
  for (int i = 0; i < levels(); ++i)
    if (tiers_[i].name == name) return i;
  return -1;
}

}  // namespace lowband::comm
