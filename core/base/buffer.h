#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace crescent::core {

class BufferPool;

/// A chunk of memory from a thread's BufferPool, owned uniquely (move-only). The bytes in
/// use are [offset, offset + size) of a `capacity()`-byte chunk. Destroying a Buffer
/// returns its chunk to the pool it came from, which must be the calling thread's pool
/// (buffers never cross threads).
class Buffer {
 public:
  Buffer() = default;
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { release(); }

  bool empty() const { return size_ == 0; }
  explicit operator bool() const { return data_ != nullptr; }
  char* data() { return data_ + offset_; }
  const char* data() const { return data_ + offset_; }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  /// Bytes free after the used range (for appending).
  size_t tailroom() const { return capacity_ - offset_ - size_; }
  std::string_view view() const { return {data(), size_}; }

  /// Drops `n` bytes from the front (n <= size()).
  void consume(size_t n) {
    offset_ += n;
    size_ -= n;
  }
  /// Marks `n` more bytes after the used range as used (n <= tailroom()).
  void commit(size_t n) { size_ += n; }
  /// Copies as much of `s` as fits after the used range; returns the count copied.
  size_t append(std::string_view s);
  /// Moves the used bytes to the start of the chunk so tailroom() is maximal.
  void compact();
  /// Returns the chunk to its pool now.
  void release();

 private:
  friend class BufferPool;
  char* data_ = nullptr;
  uint32_t offset_ = 0;
  uint32_t size_ = 0;
  uint32_t capacity_ = 0;
  BufferPool* pool_ = nullptr;
};

/// A per-thread pool of fixed-size chunks (DESIGN §2): buffers are taken when data
/// arrives and returned as soon as they are written out, so an idle connection holds
/// none. Not thread-safe; each worker thread has its own pool (BufferPool::local()).
/// Keeps at most `max_free` free chunks; chunks above that are freed to the allocator.
class BufferPool {
 public:
  explicit BufferPool(size_t chunk_size = 16384, size_t max_free = 1024);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  /// A buffer with size() == 0 and capacity() == chunkSize().
  Buffer take();
  size_t chunkSize() const { return chunk_size_; }
  /// Chunks currently handed out (for stats and leak tests).
  size_t inUse() const { return in_use_; }
  size_t freeCount() const { return free_.size(); }

  /// The calling thread's pool; created on first use with `chunk_size` (later calls
  /// ignore the argument). Destroyed when the thread exits.
  static BufferPool& local(size_t chunk_size = 16384);

 private:
  friend class Buffer;
  void give(char* chunk);
  size_t chunk_size_;
  size_t max_free_;
  size_t in_use_ = 0;
  std::vector<char*> free_;
};

/// A FIFO of Buffers that allocates nothing until the first push (a std::deque allocates
/// its map and a 512-byte node when constructed: once per exchange where this is used).
/// push_front() is O(1) after a pop_front(), O(n) otherwise; the rest is O(1) amortized.
/// Not thread-safe, like Buffer.
class BufferQueue {
 public:
  bool empty() const { return head_ == items_.size(); }
  size_t size() const { return items_.size() - head_; }
  Buffer& front() { return items_[head_]; }
  void push_back(Buffer b) { items_.push_back(std::move(b)); }
  void push_front(Buffer b) {
    if (head_ > 0)
      items_[--head_] = std::move(b);
    else
      items_.insert(items_.begin(), std::move(b));
  }
  void pop_front() {
    items_[head_++] = Buffer();
    if (head_ == items_.size()) clear();
  }
  /// Drops every buffer (back to their pools); keeps the capacity.
  void clear() {
    items_.clear();
    head_ = 0;
  }
  Buffer* begin() { return items_.data() + head_; }
  Buffer* end() { return items_.data() + items_.size(); }

 private:
  std::vector<Buffer> items_;
  size_t head_ = 0;
};

}  // namespace crescent::core
