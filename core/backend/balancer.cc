#include "core/backend/balancer.h"

#include <algorithm>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "core/proto/http_head.h"

namespace crescent::core {

uint64_t hashKey(std::string_view key) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  for (unsigned char c : key) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  // 64-bit finalizer (MurmurHash3's fmix64): FNV alone clusters short similar keys.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

bool usableServers(Backend& backend, std::vector<Server*>& out) {
  out.clear();
  for (auto& s : backend.servers())
    if (!s->backup() && s->usable()) out.push_back(s.get());
  if (!out.empty()) return false;
  for (auto& s : backend.servers())
    if (s->backup() && s->usable()) out.push_back(s.get());
  return true;
}

namespace {

// Whether `s` is in the set balancing chooses from right now (non-backup first).
bool inActiveSet(Backend& be, const Server& s) {
  if (!s.usable()) return false;
  if (!s.backup()) return true;
  for (auto& o : be.servers())
    if (!o->backup() && o->usable()) return false;
  return true;
}

// Smooth weighted round robin (the nginx scheme: every pick adds each candidate's
// weight to its score, takes the highest score and subtracts the total from it), which
// spreads a server's turns instead of sending them in bursts. `dynamic`: weights as set
// at runtime and ramped by slowstart (roundrobin); else the configured ones (static-rr).
class WeightedRoundRobin final : public Balancer {
 public:
  WeightedRoundRobin(Backend& be, bool dynamic)
      : be_(be), dynamic_(dynamic), score_(be.servers().size(), 0) {}

  Server* pick(const PickRequest& req) override {
    thread_local std::vector<Server*> cand;
    usableServers(be_, cand);
    std::lock_guard<std::mutex> lock(mu_);
    Server* best = nullptr;
    int64_t total = 0;
    for (int pass = 0; pass < 2 && best == nullptr; ++pass) {
      total = 0;
      for (Server* s : cand) {
        if (s->full()) continue;
        if (pass == 0 && s == req.exclude) continue;
        int w = dynamic_ ? s->effectiveWeight(req.now_ms) : s->config().weight;
        if (w <= 0) continue;
        score_[s->index()] += w;
        total += w;
        if (best == nullptr || score_[s->index()] > score_[best->index()]) best = s;
      }
    }
    if (best != nullptr) score_[best->index()] -= total;
    return best;
  }

 private:
  Backend& be_;
  bool dynamic_;
  std::mutex mu_;
  std::vector<int64_t> score_;  // guarded by mu_
};

// Load of a server for leastconn/random: (current + queued) per unit of weight, compared
// by cross-multiplication so no division rounds.
struct Load {
  int64_t n;
  int64_t w;
  bool lessThan(const Load& o) const { return n * o.w < o.n * w; }
};

Load loadOf(const Server& s, uint64_t now) {
  return {static_cast<int64_t>(s.current()) + s.queued(),
          std::max<int64_t>(1, s.effectiveWeight(now))};
}

// Fewest (current + queued) per weight; ties go in turn (a rotating start). The turn
// rotates over the servers that may be picked (not full, not excluded): rotating over
// all of them would hand a skipped server's turns to its neighbour, which then got
// twice the share of the others among equals.
class LeastConn final : public Balancer {
 public:
  explicit LeastConn(Backend& be) : be_(be) {}

  Server* pick(const PickRequest& req) override {
    thread_local std::vector<Server*> cand;
    usableServers(be_, cand);
    std::erase_if(cand, [](Server* s) { return s->full(); });
    if (cand.size() > 1 && req.exclude != nullptr)
      std::erase_if(cand, [&](Server* s) { return s == req.exclude; });
    size_t n = cand.size();
    if (n == 0) return nullptr;
    size_t start = turn_.fetch_add(1, std::memory_order_relaxed) % n;
    Server* best = nullptr;
    Load best_load{0, 1};
    for (size_t k = 0; k < n; ++k) {
      Server* s = cand[(start + k) % n];
      Load l = loadOf(*s, req.now_ms);
      if (best == nullptr || l.lessThan(best_load)) {
        best = s;
        best_load = l;
      }
    }
    return best;
  }

 private:
  Backend& be_;
  std::atomic<uint64_t> turn_{0};
};

// The first server (lowest id) with a free slot: fills servers one after the other so
// that the others can be stopped (HAProxy's `first`).
class First final : public Balancer {
 public:
  explicit First(Backend& be) : be_(be) {}

  Server* pick(const PickRequest& req) override {
    thread_local std::vector<Server*> cand;
    usableServers(be_, cand);
    Server* fallback = nullptr;
    for (Server* s : cand) {
      if (s->full()) continue;
      if (s == req.exclude) {
        fallback = s;
        continue;
      }
      return s;
    }
    return fallback;
  }

 private:
  Backend& be_;
};

// Power of two random choices: two servers drawn at random by weight, the less loaded
// wins. Nearly leastconn's balance without its scan or its herd effect.
class RandomTwo final : public Balancer {
 public:
  explicit RandomTwo(Backend& be) : be_(be) {}

  Server* pick(const PickRequest& req) override {
    thread_local std::vector<Server*> cand;
    thread_local std::mt19937_64 rng{std::random_device{}()};
    usableServers(be_, cand);
    std::erase_if(cand,
                  [&](Server* s) { return s->full() || s->effectiveWeight(req.now_ms) <= 0; });
    if (cand.size() > 1 && req.exclude != nullptr)
      std::erase_if(cand, [&](Server* s) { return s == req.exclude; });
    if (cand.empty()) return nullptr;
    if (cand.size() == 1) return cand[0];
    int64_t total = 0;
    for (Server* s : cand) total += s->effectiveWeight(req.now_ms);
    auto draw = [&]() -> Server* {
      int64_t r = static_cast<int64_t>(rng() % static_cast<uint64_t>(total));
      for (Server* s : cand) {
        r -= s->effectiveWeight(req.now_ms);
        if (r < 0) return s;
      }
      return cand.back();
    };
    Server* a = draw();
    Server* b = draw();
    for (int i = 0; i < 4 && b == a; ++i) b = draw();
    return loadOf(*b, req.now_ms).lessThan(loadOf(*a, req.now_ms)) ? b : a;
  }

 private:
  Backend& be_;
};

// The value of query parameter `name` in `query` ("a=1&b=2"), or nullopt.
std::optional<std::string_view> queryParam(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) return eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

// Hash algorithms: source, uri, url_param, hdr. A key's server is found by `map-based`
// (hash modulo the total weight of the usable servers) or `consistent` (a ring).
//
// The ring: each server owns kPointsPerWeight * weight points at hashKey("name#i"), so
// the ring depends only on names and weights (the same in every process and generation).
// A key goes to the owner of the first point at or after its hash whose server is in the
// active set; when a server leaves, only its keys move (to the next points' owners), and
// when it returns they come back. Ring rather than Maglev for that exact property: a
// Maglev table also reshuffles a few keys of other servers on every change.
//
// Points per unit of weight: a server's share of the ring varies by about
// 1/sqrt(points). With 40, five servers of weight 1 (the default) had a max/mean load of
// 1.30 for s1..s5, and a quarter of random 5-server pools exceeded 1.25; with 160 the
// 99th percentile is 1.23 (tests/unit/backend/balancer_test.cc measures it). Cost: 16
// bytes per point, and a rebuild on each weight change (20 servers of weight 256: ~13 MB,
// ~60 ms in a release build, off the lookup lock).
class Hash final : public Balancer {
 public:
  static constexpr int kPointsPerWeight = 160;

  Hash(Backend& be, bool consistent) : be_(be), consistent_(consistent), rr_(be, true) {
    if (consistent_) rebuild();
  }

  bool affinity() const override { return true; }

  void update() override {
    if (consistent_) rebuild();
  }

  Server* pick(const PickRequest& req) override {
    std::optional<uint64_t> h = keyHash(req);
    if (!h) return rr_.pick(req);
    Server* s = consistent_ ? ringLookup(*h, req) : mapLookup(*h, req);
    return s;
  }

 private:
  std::optional<uint64_t> keyHash(const PickRequest& req) const {
    const BackendConfig& cfg = be_.config();
    switch (cfg.algo) {
      case BalanceAlgo::kSource:
        if (req.src == nullptr || !req.src->isIp()) return std::nullopt;
        return hashKey(req.src->ip());
      case BalanceAlgo::kUri:
        if (req.path.empty()) return std::nullopt;
        return hashKey(req.path);
      case BalanceAlgo::kUrlParam: {
        auto v = queryParam(req.query, cfg.balance_arg);
        if (!v) return std::nullopt;
        return hashKey(*v);
      }
      case BalanceAlgo::kHdr: {
        if (req.head == nullptr) return std::nullopt;
        const HeaderField* f = req.head->find(cfg.balance_arg);
        if (f == nullptr) return std::nullopt;
        return hashKey(f->value);
      }
      default:
        return std::nullopt;
    }
  }

  Server* mapLookup(uint64_t h, const PickRequest& req) {
    thread_local std::vector<Server*> cand;
    usableServers(be_, cand);
    int64_t total = 0;
    for (Server* s : cand) total += s->weight();
    if (total <= 0) return nullptr;
    int64_t r = static_cast<int64_t>(h % static_cast<uint64_t>(total));
    Server* chosen = cand.back();
    for (Server* s : cand) {
      r -= s->weight();
      if (r < 0) {
        chosen = s;
        break;
      }
    }
    if (chosen == req.exclude) return nextAfter(cand, chosen);
    return chosen;
  }

  static Server* nextAfter(const std::vector<Server*>& cand, Server* s) {
    for (size_t i = 0; i < cand.size(); ++i)
      if (cand[i] == s && cand.size() > 1) return cand[(i + 1) % cand.size()];
    return s;
  }

  // Rebuilds the ring when a weight changed since the last build. Health and admin
  // changes leave the ring alone (lookups skip servers outside the active set), so a
  // flapping server costs no rehashing. Serialized by build_mu_, so that of two
  // concurrent rebuilds the one that read the older weights cannot swap its ring in last.
  void rebuild() {
    std::lock_guard<std::mutex> build(build_mu_);
    std::vector<int> weights;
    weights.reserve(be_.servers().size());
    size_t total = 0;
    for (auto& s : be_.servers()) {
      weights.push_back(s->weight());
      total += static_cast<size_t>(weights.back()) * kPointsPerWeight;
    }
    if (built_ && weights == built_weights_) return;
    std::vector<std::pair<uint64_t, uint32_t>> ring;
    ring.reserve(total);
    std::string point;
    for (auto& s : be_.servers()) {
      int points = weights[s->index()] * kPointsPerWeight;
      for (int i = 0; i < points; ++i) {
        point.assign(s->name());
        point += '#';
        point += std::to_string(i);
        ring.emplace_back(hashKey(point), static_cast<uint32_t>(s->index()));
      }
    }
    std::sort(ring.begin(), ring.end());
    {
      std::lock_guard<std::mutex> lock(mu_);
      ring_.swap(ring);
    }
    built_weights_ = std::move(weights);
    built_ = true;
  }

  Server* ringLookup(uint64_t h, const PickRequest& req) {
    auto& servers = be_.servers();
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = ring_.size();
    if (n == 0) return nullptr;
    auto it = std::lower_bound(ring_.begin(), ring_.end(), std::make_pair(h, uint32_t{0}));
    size_t i = static_cast<size_t>(it - ring_.begin()) % n;
    Server* fallback = nullptr;
    for (size_t k = 0; k < n; ++k) {
      Server* s = servers[ring_[(i + k) % n].second].get();
      if (!inActiveSet(be_, *s)) continue;
      if (s == req.exclude) {
        if (fallback == nullptr) fallback = s;
        continue;
      }
      return s;
    }
    return fallback;
  }

  Backend& be_;
  bool consistent_;
  WeightedRoundRobin rr_;  // keys that are missing (no such header...)
  std::mutex mu_;
  std::vector<std::pair<uint64_t, uint32_t>> ring_;  // guarded by mu_, sorted
  std::mutex build_mu_;                              // held for a whole rebuild()
  std::vector<int> built_weights_;                   // guarded by build_mu_: ring_'s weights
  bool built_ = false;                               // guarded by build_mu_
};

}  // namespace

std::unique_ptr<Balancer> makeBalancer(Backend& backend) {
  const BackendConfig& cfg = backend.config();
  switch (cfg.algo) {
    case BalanceAlgo::kRoundRobin:
      return std::make_unique<WeightedRoundRobin>(backend, true);
    case BalanceAlgo::kStaticRr:
      return std::make_unique<WeightedRoundRobin>(backend, false);
    case BalanceAlgo::kLeastConn:
      return std::make_unique<LeastConn>(backend);
    case BalanceAlgo::kFirst:
      return std::make_unique<First>(backend);
    case BalanceAlgo::kRandom:
      return std::make_unique<RandomTwo>(backend);
    case BalanceAlgo::kSource:
    case BalanceAlgo::kUri:
    case BalanceAlgo::kUrlParam:
    case BalanceAlgo::kHdr:
      return std::make_unique<Hash>(backend, cfg.hash_type == HashType::kConsistent);
  }
  return std::make_unique<WeightedRoundRobin>(backend, true);
}

}  // namespace crescent::core
