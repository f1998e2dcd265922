#include "core/backend/source_binding.h"

namespace crescent::core {

SourcePicker::SourcePicker(const SourceConfig& cfg) : cfg_(cfg) {}

size_t SourcePicker::choices() const {
  size_t ports = cfg_.port_min == 0 ? 1 : static_cast<size_t>(cfg_.port_max - cfg_.port_min) + 1;
  return cfg_.addresses.size() * ports;
}

SourcePicker::Choice SourcePicker::next() {
  uint64_t n = counter_.fetch_add(1, std::memory_order_relaxed);
  size_t count = cfg_.addresses.size();
  Choice c;
  c.local = cfg_.addresses[n % count];
  if (cfg_.port_min != 0) {
    // Addresses turn fastest; each address walks its own copy of the port range.
    uint64_t span = static_cast<uint64_t>(cfg_.port_max - cfg_.port_min) + 1;
    c.local.setPort(static_cast<uint16_t>(cfg_.port_min + (n / count) % span));
    c.no_port = false;
  }
  return c;
}

}  // namespace crescent::core
