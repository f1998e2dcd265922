#include "core/net/event_loop.h"

#include <cassert>
#include <cstdlib>

namespace crescent::core {

EventLoop::EventLoop() {
  if (uv_loop_init(&loop_) != 0) std::abort();
  uv_idle_init(&loop_, &idle_);
  idle_.data = this;
  uv_async_init(&loop_, &async_, &EventLoop::onAsyncCb);
  async_.data = this;
  // The async handle must not keep the loop alive on its own: owners decide when the
  // loop ends (workers keep it alive with their listeners and sessions).
  uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
  // The heartbeat (turns) never keeps the loop alive either.
  uv_prepare_init(&loop_, &prepare_);
  prepare_.data = this;
  uv_prepare_start(&prepare_, &EventLoop::onBeatCb);
  uv_unref(reinterpret_cast<uv_handle_t*>(&prepare_));
  uv_check_init(&loop_, &check_);
  check_.data = this;
  uv_check_start(&check_, &EventLoop::onBeatCb);
  uv_unref(reinterpret_cast<uv_handle_t*>(&check_));
}

void EventLoop::onBeatCb(uv_prepare_t* h) {
  static_cast<EventLoop*>(h->data)->turns_.fetch_add(1, std::memory_order_relaxed);
}

void EventLoop::onBeatCb(uv_check_t* h) {
  static_cast<EventLoop*>(h->data)->turns_.fetch_add(1, std::memory_order_relaxed);
}

EventLoop::~EventLoop() {
  close();
}

void EventLoop::deferDelete(std::unique_ptr<Deletable> obj) {
  if (!obj) return;
  if (deferred_.empty() && !closed_) uv_idle_start(&idle_, &EventLoop::onIdleCb);
  deferred_.push_back(std::move(obj));
}

void EventLoop::onIdleCb(uv_idle_t* h) {
  auto* self = static_cast<EventLoop*>(h->data);
  self->drainDeferred();
}

void EventLoop::drainDeferred() {
  // Destructors may defer more objects; loop until the list stays empty.
  while (!deferred_.empty()) {
    std::vector<std::unique_ptr<Deletable>> batch;
    batch.swap(deferred_);
    batch.clear();
  }
  uv_idle_stop(&idle_);
}

void EventLoop::post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_posts_) return;
    posted_.push_back(std::move(task));
  }
  uv_async_send(&async_);
}

void EventLoop::onAsyncCb(uv_async_t* h) {
  static_cast<EventLoop*>(h->data)->runPosted();
}

void EventLoop::runPosted() {
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks.swap(posted_);
  }
  for (auto& t : tasks) t();
}

void EventLoop::keepAlive(bool on) {
  if (closed_) return;
  auto* h = reinterpret_cast<uv_handle_t*>(&async_);
  if (on)
    uv_ref(h);
  else
    uv_unref(h);
}

void EventLoop::run() {
  uv_run(&loop_, UV_RUN_DEFAULT);
}

int EventLoop::close() {
  if (closed_) return 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    accepting_posts_ = false;
  }
  runPosted();
  drainDeferred();
  closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
  drainDeferred();
  int rc = uv_loop_close(&loop_);
  return rc;
}

}  // namespace crescent::core
