#include "core/session/body_budget.h"

namespace crescent::core {

BodyBudget& BodyBudget::process() {
  static BodyBudget budget;
  return budget;
}

bool BodyBudget::reserve(uint64_t n, uint64_t limit) {
  uint64_t cur = used_.load(std::memory_order_relaxed);
  do {
    if (limit != 0 && (cur > limit || n > limit - cur)) {
      refusals_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
  } while (!used_.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed));
  return true;
}

}  // namespace crescent::core
