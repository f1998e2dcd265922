#include "core/backend/connection_pool.h"

#include <algorithm>

namespace crescent::core {

ConnectionPool::ConnectionPool(EventLoop& loop, size_t max_idle_per_server,
                               uint64_t idle_timeout_ms)
    : loop_(loop),
      max_idle_(max_idle_per_server),
      idle_timeout_(idle_timeout_ms),
      timer_(Timer::create(loop, &ConnectionPool::onTimer, this)) {}

ConnectionPool::~ConnectionPool() {
  clear();
}

StreamPtr ConnectionPool::take(uint64_t key) {
  auto it = idle_.find(key);
  if (it == idle_.end() || it->second.empty()) return StreamPtr();
  // Most recently used first: its server side is the least likely to have timed out.
  StreamPtr s = std::move(it->second.back().stream);
  it->second.pop_back();
  // Still reading: the new owner sets its handler before the loop runs again, and keeping
  // the read armed saves two epoll_ctl calls per reused connection.
  s->setHandler(nullptr);
  return s;
}

void ConnectionPool::give(uint64_t key, StreamPtr stream, uint64_t idle_ms, size_t max_idle) {
  auto& list = idle_[key];
  if (list.size() >= max_idle || idle_ms == 0) return;  // StreamPtr closes it
  stream->setHandler(this);
  stream->readStart();  // to notice the server closing it
  uint64_t expires = loop_.now() + idle_ms;
  list.push_back({key, std::move(stream), expires});
  if (!timer_->active() || timer_->due() > expires) timer_->start(idle_ms);
}

void ConnectionPool::clear() {
  idle_.clear();
  if (timer_) timer_->stop();
}

size_t ConnectionPool::idleCount() const {
  size_t n = 0;
  for (auto& [k, v] : idle_) n += v.size();
  return n;
}

// Any byte from an idle server is a protocol error or a close: drop the connection.
void ConnectionPool::onStreamData(Stream& s, Buffer) {
  drop(s);
}
void ConnectionPool::onStreamEof(Stream& s) {
  drop(s);
}
void ConnectionPool::onStreamError(Stream& s, int) {
  drop(s);
}

void ConnectionPool::drop(Stream& s) {
  for (auto& [server, list] : idle_) {
    auto it =
        std::find_if(list.begin(), list.end(), [&](const Idle& i) { return i.stream.get() == &s; });
    if (it != list.end()) {
      list.erase(it);  // closes the stream (safe inside its callback: freed in close cb)
      return;
    }
  }
}

void ConnectionPool::onTimer(void* ctx) {
  auto* self = static_cast<ConnectionPool*>(ctx);
  uint64_t now = self->loop_.now();
  uint64_t next = 0;
  for (auto& [server, list] : self->idle_) {
    list.erase(
        std::remove_if(list.begin(), list.end(), [&](const Idle& i) { return i.expires <= now; }),
        list.end());
    for (auto& i : list) {
      uint64_t left = i.expires - now;
      if (next == 0 || left < next) next = left;
    }
  }
  if (next > 0) self->timer_->start(next);
}

}  // namespace crescent::core
