#include "core/base/shared_dict.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

namespace crescent::core {

namespace {

// Far enough to mean "never" in practice, small enough that now + ttl cannot overflow.
constexpr int64_t kMaxTtlMs = int64_t{1} << 52;

int64_t steadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Expiry time of a value stored at `now` with `ttl_s`; 0 = never. A positive ttl is at
// least 1 ms so that it does expire.
int64_t expiryOf(double ttl_s, int64_t now) {
  if (!(ttl_s > 0)) return 0;
  double ms = std::ceil(ttl_s * 1000);
  return now + (ms >= static_cast<double>(kMaxTtlMs) ? kMaxTtlMs : static_cast<int64_t>(ms));
}

}  // namespace

const char* sharedDictErrorText(SharedDictError e) {
  switch (e) {
    case SharedDictError::kOk:
      return "ok";
    case SharedDictError::kExists:
      return "exists";
    case SharedDictError::kNotFound:
      return "not found";
    case SharedDictError::kNotANumber:
      return "not a number";
    case SharedDictError::kNoMemory:
      return "no memory";
    case SharedDictError::kEmptyKey:
      return "empty key";
    case SharedDictError::kKeyTooLong:
      return "key too long";
    case SharedDictError::kValueTooLarge:
      return "value too large";
  }
  return "unknown error";
}

SharedDict::SharedDict(std::string name, Limits limits, Clock clock)
    : name_(std::move(name)), limits_(limits), clock_(std::move(clock)) {}

int64_t SharedDict::now() const {
  return clock_ ? clock_() : steadyMs();
}

size_t SharedDict::cost(std::string_view key, const SharedValue& v) {
  const auto* s = std::get_if<std::string>(&v);
  return kEntryOverhead + key.size() + (s != nullptr ? s->size() : 0);
}

SharedDictError SharedDict::check(std::string_view key, const SharedValue& value) const {
  if (key.empty()) return SharedDictError::kEmptyKey;
  if (key.size() > limits_.max_key_bytes) return SharedDictError::kKeyTooLong;
  const auto* s = std::get_if<std::string>(&value);
  if (s != nullptr && s->size() > limits_.max_value_bytes) return SharedDictError::kValueTooLarge;
  return SharedDictError::kOk;
}

SharedDict::Map::iterator SharedDict::findLive(std::string_view key, int64_t now) {
  auto it = map_.find(key);
  if (it != map_.end() && expired(it->second, now)) {
    eraseEntry(it);
    return map_.end();
  }
  return it;
}

void SharedDict::eraseEntry(Map::iterator it) {
  bytes_ -= cost(it->first, it->second.value);
  map_.erase(it);
}

void SharedDict::sweepExpired(int64_t now) {
  if (now < earliest_expiry_) return;
  int64_t earliest = std::numeric_limits<int64_t>::max();
  for (auto it = map_.begin(); it != map_.end();) {
    if (expired(it->second, now)) {
      bytes_ -= cost(it->first, it->second.value);
      it = map_.erase(it);
      continue;
    }
    if (it->second.expires_ms != 0) earliest = std::min(earliest, it->second.expires_ms);
    ++it;
  }
  earliest_expiry_ = earliest;
}

SharedDictError SharedDict::store(std::string_view key, SharedValue value, double ttl_s,
                                  int64_t now) {
  auto it = map_.find(key);
  if (std::holds_alternative<std::monostate>(value)) {
    if (it != map_.end()) eraseEntry(it);
    return SharedDictError::kOk;
  }
  size_t new_cost = cost(key, value);
  size_t old_cost = it != map_.end() ? cost(it->first, it->second.value) : 0;
  if (bytes_ - old_cost + new_cost > limits_.max_bytes) {
    sweepExpired(now);  // may have erased `it`
    it = map_.find(key);
    old_cost = it != map_.end() ? cost(it->first, it->second.value) : 0;
    if (bytes_ - old_cost + new_cost > limits_.max_bytes) return SharedDictError::kNoMemory;
  }
  int64_t expires = expiryOf(ttl_s, now);
  if (it == map_.end()) {
    map_.emplace(std::string(key), Entry{std::move(value), expires});
  } else {
    it->second = Entry{std::move(value), expires};
  }
  bytes_ = bytes_ - old_cost + new_cost;
  if (expires != 0) earliest_expiry_ = std::min(earliest_expiry_, expires);
  return SharedDictError::kOk;
}

SharedValue SharedDict::get(std::string_view key) {
  int64_t t = now();
  std::lock_guard lock(mu_);
  auto it = findLive(key, t);
  return it == map_.end() ? SharedValue() : it->second.value;
}

SharedDictError SharedDict::set(std::string_view key, SharedValue value, double ttl_s) {
  if (SharedDictError e = check(key, value); e != SharedDictError::kOk) return e;
  int64_t t = now();
  std::lock_guard lock(mu_);
  return store(key, std::move(value), ttl_s, t);
}

SharedDictError SharedDict::add(std::string_view key, SharedValue value, double ttl_s) {
  if (SharedDictError e = check(key, value); e != SharedDictError::kOk) return e;
  int64_t t = now();
  std::lock_guard lock(mu_);
  if (findLive(key, t) != map_.end()) return SharedDictError::kExists;
  return store(key, std::move(value), ttl_s, t);
}

SharedDictError SharedDict::replace(std::string_view key, SharedValue value, double ttl_s) {
  if (SharedDictError e = check(key, value); e != SharedDictError::kOk) return e;
  int64_t t = now();
  std::lock_guard lock(mu_);
  if (findLive(key, t) == map_.end()) return SharedDictError::kNotFound;
  return store(key, std::move(value), ttl_s, t);
}

SharedDictError SharedDict::incr(std::string_view key, double delta, double& out,
                                 std::optional<double> init, double init_ttl_s) {
  if (SharedDictError e = check(key, SharedValue()); e != SharedDictError::kOk) return e;
  int64_t t = now();
  std::lock_guard lock(mu_);
  auto it = findLive(key, t);
  if (it == map_.end()) {
    if (!init) return SharedDictError::kNotFound;
    SharedDictError e = store(key, *init + delta, init_ttl_s, t);
    if (e == SharedDictError::kOk) out = *init + delta;
    return e;
  }
  double* d = std::get_if<double>(&it->second.value);
  if (d == nullptr) return SharedDictError::kNotANumber;
  *d += delta;  // a number costs no more than the number it replaces
  out = *d;
  return SharedDictError::kOk;
}

void SharedDict::remove(std::string_view key) {
  std::lock_guard lock(mu_);
  auto it = map_.find(key);
  if (it != map_.end()) eraseEntry(it);
}

std::vector<std::string> SharedDict::keys(size_t max) {
  int64_t t = now();
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  out.reserve(max == 0 ? map_.size() : std::min(max, map_.size()));
  for (const auto& [key, entry] : map_) {
    if (max != 0 && out.size() >= max) break;
    if (!expired(entry, t)) out.push_back(key);
  }
  return out;
}

void SharedDict::flushAll() {
  std::lock_guard lock(mu_);
  map_.clear();
  bytes_ = 0;
  earliest_expiry_ = std::numeric_limits<int64_t>::max();
}

size_t SharedDict::size() {
  std::lock_guard lock(mu_);
  return map_.size();
}

size_t SharedDict::bytes() {
  std::lock_guard lock(mu_);
  return bytes_;
}

namespace {

struct Registry {
  std::mutex mu;
  std::unordered_map<std::string, std::shared_ptr<SharedDict>, std::hash<std::string>> dicts;
};

Registry& registry() {
  // Never destroyed: worker threads may still hold dictionaries while statics are torn down.
  static Registry* r = new Registry;
  return *r;
}

}  // namespace

std::shared_ptr<SharedDict> SharedDicts::get(std::string_view name) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  std::string key(name);
  auto it = r.dicts.find(key);
  if (it != r.dicts.end()) return it->second;
  auto d = std::make_shared<SharedDict>(key);
  r.dicts.emplace(std::move(key), d);
  return d;
}

}  // namespace crescent::core
