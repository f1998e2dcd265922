#include "core/net/timer.h"

#include <cstdlib>

namespace crescent::core {

std::unique_ptr<Timer, Timer::Closer> Timer::create(EventLoop& loop, Callback cb, void* ctx) {
  return std::unique_ptr<Timer, Closer>(new Timer(loop, cb, ctx));
}

Timer::Timer(EventLoop& loop, Callback cb, void* ctx) : loop_(loop), cb_(cb), ctx_(ctx) {
  if (uv_timer_init(loop.uv(), &h_) != 0) std::abort();
  h_.data = this;
}

void Timer::start(uint64_t ms) {
  if (closing_) return;
  due_ = loop_.now() + ms;
  uv_timer_start(&h_, &Timer::onTimerCb, ms, 0);
}

void Timer::stop() {
  if (!closing_) uv_timer_stop(&h_);
}

void Timer::onTimerCb(uv_timer_t* h) {
  auto* self = static_cast<Timer*>(h->data);
  if (!self->closing_) self->cb_(self->ctx_);
}

void Timer::close() {
  if (closing_) return;
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&h_), &Timer::onCloseCb);
}

void Timer::onCloseCb(uv_handle_t* h) {
  delete static_cast<Timer*>(h->data);
}

}  // namespace crescent::core
