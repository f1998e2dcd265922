#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

namespace crescent::core {

/// A value in a shared dictionary: nil (absent), boolean, number or string.
using SharedValue = std::variant<std::monostate, bool, double, std::string>;

/// Why a dictionary operation did nothing. The text (sharedDictErrorText) is what the Lua
/// API returns as `nil, err`, after OpenResty's ngx.shared.DICT.
enum class SharedDictError {
  kOk,
  kExists,         ///< "exists": add() of a key that has a live value
  kNotFound,       ///< "not found": replace()/incr() of a key without a live value
  kNotANumber,     ///< "not a number": incr() of a key holding a non-number
  kNoMemory,       ///< "no memory": the dictionary's byte budget would be exceeded
  kEmptyKey,       ///< "empty key"
  kKeyTooLong,     ///< "key too long": more than Limits::max_key_bytes
  kValueTooLarge,  ///< "value too large": a string above Limits::max_value_bytes
};
const char* sharedDictErrorText(SharedDictError e);

/// Bounds of one SharedDict, in bytes.
struct SharedDictLimits {
  size_t max_key_bytes = 65535;
  size_t max_value_bytes = 1 << 20;  ///< one string value
  size_t max_bytes = 64u << 20;      ///< keys + values + SharedDict::kEntryOverhead per entry
};

/// A process-wide dictionary of string keys to SharedValues, with optional expiry: the C++
/// side of `crescent.shared(name)` (docs/lua-api.md "Shared dictionaries"). It lives
/// outside config generations, so what one generation's Lua states store is there for
/// the next one's, and all worker threads see the same data.
///
/// Thread-safe: every call takes one mutex for a map lookup and a copy of the value; no
/// call blocks on anything else. Memory is bounded: each entry costs its key, its string
/// value and kEntryOverhead bytes against Limits::max_bytes; a write that would exceed
/// it first drops expired entries, then fails with kNoMemory (no eviction of live data).
///
/// Expiry: `ttl_s` in seconds (fractions allowed, millisecond resolution); 0 = never.
/// An expired key reads as absent and is removed lazily (on access, or when room is
/// needed).
class SharedDict {
 public:
  using Limits = SharedDictLimits;
  /// Monotonic milliseconds; injectable so tests control expiry.
  using Clock = std::function<int64_t()>;
  static constexpr size_t kEntryOverhead = 64;

  explicit SharedDict(std::string name, Limits limits = Limits(), Clock clock = nullptr);
  SharedDict(const SharedDict&) = delete;
  SharedDict& operator=(const SharedDict&) = delete;

  const std::string& name() const { return name_; }

  /// The live value of `key`, or nil (std::monostate) when absent or expired.
  SharedValue get(std::string_view key);

  /// Stores `value` (nil deletes the key) with `ttl_s` (0 = never expires).
  /// Errors: kEmptyKey, kKeyTooLong, kValueTooLarge, kNoMemory (the old value stays).
  SharedDictError set(std::string_view key, SharedValue value, double ttl_s = 0);
  /// set() only when the key has no live value; else kExists.
  SharedDictError add(std::string_view key, SharedValue value, double ttl_s = 0);
  /// set() only when the key has a live value; else kNotFound.
  SharedDictError replace(std::string_view key, SharedValue value, double ttl_s = 0);

  /// Adds `delta` to the number at `key` (its expiry unchanged) and returns the sum in
  /// `out`. A key without a live value: with `init`, it becomes init + delta with expiry
  /// `init_ttl_s`; without, kNotFound. A non-number value: kNotANumber.
  SharedDictError incr(std::string_view key, double delta, double& out,
                       std::optional<double> init = std::nullopt, double init_ttl_s = 0);

  /// Removes `key` (nothing when absent).
  void remove(std::string_view key);

  /// Up to `max` live keys (0 = all), in no particular order. Holds the lock while it
  /// copies: mind large dictionaries.
  std::vector<std::string> keys(size_t max = 0);

  /// Removes every entry.
  void flushAll();

  /// Entries held (expired ones not yet removed included), and the bytes they are charged.
  size_t size();
  size_t bytes();

 private:
  struct Entry {
    SharedValue value;
    int64_t expires_ms = 0;  // clock time; 0 = never
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  using Map = std::unordered_map<std::string, Entry, Hash, std::equal_to<>>;

  int64_t now() const;
  static bool expired(const Entry& e, int64_t now) {
    return e.expires_ms != 0 && e.expires_ms <= now;
  }
  static size_t cost(std::string_view key, const SharedValue& v);
  /// Key and value checks shared by the writers.
  SharedDictError check(std::string_view key, const SharedValue& value) const;
  /// Finds a live entry, erasing it if expired. Caller holds mu_.
  Map::iterator findLive(std::string_view key, int64_t now);
  /// Stores under the lock: the budget check, the expired sweep when short of room.
  SharedDictError store(std::string_view key, SharedValue value, double ttl_s, int64_t now);
  void eraseEntry(Map::iterator it);
  /// Removes expired entries when one may exist. Caller holds mu_.
  void sweepExpired(int64_t now);

  const std::string name_;
  const Limits limits_;
  const Clock clock_;
  std::mutex mu_;
  Map map_;           // guarded by mu_
  size_t bytes_ = 0;  // guarded by mu_
  int64_t earliest_expiry_ =
      std::numeric_limits<int64_t>::max();  // guarded by mu_; no entry expires before
};

/// The process's dictionaries by name. A dictionary is created on first use and kept
/// for the process's life (never freed: it outlives every generation and thread).
/// Thread-safe.
class SharedDicts {
 public:
  /// The dictionary `name` (any non-empty name), created with default limits when new.
  static std::shared_ptr<SharedDict> get(std::string_view name);
};

}  // namespace crescent::core
