#include "core/base/running_slot.h"

#include <cstring>

namespace crescent::core {

namespace {
thread_local RunningSlot* t_slot = nullptr;
}  // namespace

void RunningSlot::copy(char* dst, size_t cap, std::string_view src) {
  size_t n = src.size() < cap - 1 ? src.size() : cap - 1;
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

void RunningSlot::enter(std::string_view what, std::string_view defined_at) {
  std::lock_guard<std::mutex> lock(mu_);
  if (depth_++ > 0) return;
  copy(what_, sizeof(what_), what);
  copy(defined_, sizeof(defined_), defined_at);
  at_[0] = '\0';
}

void RunningSlot::at(std::string_view at) {
  std::lock_guard<std::mutex> lock(mu_);
  if (depth_ > 0) copy(at_, sizeof(at_), at);
}

void RunningSlot::leave() {
  std::lock_guard<std::mutex> lock(mu_);
  if (depth_ > 0 && --depth_ == 0) {
    what_[0] = '\0';
    defined_[0] = '\0';
    at_[0] = '\0';
  }
}

std::string RunningSlot::describe() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (depth_ == 0) return {};
  std::string out = what_[0] != '\0' ? what_ : "Lua code";
  if (defined_[0] != '\0' || at_[0] != '\0') {
    out += " (";
    if (defined_[0] != '\0') out += std::string("function defined at ") + defined_;
    if (defined_[0] != '\0' && at_[0] != '\0') out += ", ";
    if (at_[0] != '\0') out += std::string("last seen at ") + at_;
    out += ")";
  }
  return out;
}

RunningSlot* RunningSlot::current() {
  return t_slot;
}

void RunningSlot::setCurrent(RunningSlot* slot) {
  t_slot = slot;
}

}  // namespace crescent::core
