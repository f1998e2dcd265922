#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace crescent::core {

/// A body crescent sends as it is: either bytes it owns (a std::string) or bytes owned
/// elsewhere and borrowed (e.g. a Lua string pinned in its state's registry: a 50 MB
/// txn:reply body reaches the socket without a copy, issue 17 part 7). Move-only.
///
/// A borrowed range stays valid while the Bytes (or the stream write it was handed to)
/// holds `keep`; dropping the last holder releases it. Like Buffer, a Bytes never crosses
/// threads: the keeper is released on the thread that made it.
class Bytes {
 public:
  Bytes() = default;
  /// Owns `s` (implicit: most bodies are strings made here).
  Bytes(std::string s) : own_(std::move(s)) {}  // NOLINT(google-explicit-constructor)
  Bytes(Bytes&&) noexcept = default;
  Bytes& operator=(Bytes&&) noexcept = default;
  Bytes(const Bytes&) = delete;
  Bytes& operator=(const Bytes&) = delete;

  /// Borrows [p, p + n), valid while `keep` is held.
  static Bytes borrow(const char* p, size_t n, std::shared_ptr<void> keep) {
    Bytes b;
    b.p_ = p;
    b.n_ = n;
    b.keep_ = std::move(keep);
    return b;
  }

  std::string_view view() const { return keep_ ? std::string_view(p_, n_) : own_; }
  size_t size() const { return keep_ ? n_ : own_.size(); }
  bool empty() const { return size() == 0; }
  bool borrowed() const { return keep_ != nullptr; }

  /// Appends a copy of `s`; a borrowed range is copied first (and released).
  void append(std::string_view s) {
    if (keep_) own();
    own_.append(s);
  }
  void clear() {
    own_.clear();
    release();
  }
  /// The bytes as an owned string (a copy when borrowed); leaves this empty.
  std::string take() && {
    if (keep_) own();
    return std::move(own_);
  }

  /// Makes a borrowed range also hold `owner` until the range is released, releasing the
  /// range's keeper first: for a keeper that needs its owner alive to let go (a Lua
  /// string's pin needs the Lua state). No-op on owned bytes.
  void keepAlso(std::shared_ptr<void> owner) {
    if (!keep_) return;
    struct Both {
      std::shared_ptr<void> owner;  // destroyed last
      std::shared_ptr<void> keep;
    };
    keep_ = std::make_shared<Both>(Both{std::move(owner), std::move(keep_)});
  }

 private:
  void own() {
    own_.assign(p_, n_);
    release();
  }
  void release() {
    keep_.reset();
    p_ = nullptr;
    n_ = 0;
  }

  std::string own_;
  const char* p_ = nullptr;
  size_t n_ = 0;
  std::shared_ptr<void> keep_;  // null: own_ holds the bytes
};

}  // namespace crescent::core
