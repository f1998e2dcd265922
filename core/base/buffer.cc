#include "core/base/buffer.h"

#include <cstdlib>
#include <cstring>
#include <memory>

namespace crescent::core {

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    offset_ = std::exchange(o.offset_, 0);
    size_ = std::exchange(o.size_, 0);
    capacity_ = std::exchange(o.capacity_, 0);
    pool_ = std::exchange(o.pool_, nullptr);
  }
  return *this;
}

size_t Buffer::append(std::string_view s) {
  size_t n = std::min(s.size(), tailroom());
  std::memcpy(data_ + offset_ + size_, s.data(), n);
  size_ += n;
  return n;
}

void Buffer::compact() {
  if (offset_ == 0) return;
  std::memmove(data_, data_ + offset_, size_);
  offset_ = 0;
}

void Buffer::release() {
  if (data_ != nullptr) pool_->give(data_);
  data_ = nullptr;
  offset_ = size_ = capacity_ = 0;
  pool_ = nullptr;
}

BufferPool::BufferPool(size_t chunk_size, size_t max_free)
    : chunk_size_(chunk_size), max_free_(max_free) {}

BufferPool::~BufferPool() {
  for (char* c : free_) std::free(c);
}

Buffer BufferPool::take() {
  char* c;
  if (!free_.empty()) {
    c = free_.back();
    free_.pop_back();
  } else {
    c = static_cast<char*>(std::malloc(chunk_size_));
    if (c == nullptr) std::abort();  // out of memory: nothing sane to do on the data path
  }
  ++in_use_;
  Buffer b;
  b.data_ = c;
  b.capacity_ = static_cast<uint32_t>(chunk_size_);
  b.pool_ = this;
  return b;
}

void BufferPool::give(char* chunk) {
  --in_use_;
  if (free_.size() < max_free_) {
    free_.push_back(chunk);
  } else {
    std::free(chunk);
  }
}

BufferPool& BufferPool::local(size_t chunk_size) {
  thread_local std::unique_ptr<BufferPool> pool;
  if (!pool) pool = std::make_unique<BufferPool>(chunk_size);
  return *pool;
}

}  // namespace crescent::core
