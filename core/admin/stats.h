#pragma once

// The stats of frontends, backends and servers in HAProxy's `show stat` shape
// (management guide §9.1): one builder, read by the runtime API's `show stat` and by the
// admin listener's /stats;csv, /stats;json and /stats (HTML).

#include <string>
#include <string_view>
#include <vector>

#include "core/admin/process_status.h"
#include "core/session/generation.h"

namespace crescent::core::stats {

/// HAProxy's `show stat` field names, in HAProxy's order (pxname ... ttime).
const std::vector<std::string_view>& fieldNames();

/// One row per field of fieldNames(); "" where crescent keeps no value (HAProxy leaves
/// fields that do not apply empty too).
using Row = std::vector<std::string>;

/// The rows of `gen`: a FRONTEND row per frontend, then for each backend a row per server
/// and its BACKEND row. `stopping`: frontends show STOP instead of OPEN. Reads atomics
/// only: any thread, while `gen` is held.
std::vector<Row> rows(Generation& gen, bool stopping);

/// `show stat`'s CSV: a "# pxname,svname,..." header line, then rows(gen) (none when
/// `gen` is null), each line ending in "\n".
std::string csv(Generation* gen, bool stopping);

/// The same rows as a JSON array of objects keyed by field name; a field that is all
/// digits is a JSON number, an empty one is null.
std::string json(Generation& gen, bool stopping);

/// The stats page for people (HTML5, refreshing every 10 s): the live generations and
/// their sessions, then a table per frontend and per backend with its servers.
std::string html(Generation& gen, const ProcessStatus::Snapshot& process);

/// Prometheus text exposition format 0.0.4, names after HAProxy's exporter with
/// `prefix` ("crescent" by default): process, frontend, backend and server metrics.
std::string metrics(Generation& gen, const ProcessStatus::Snapshot& process,
                    std::string_view prefix);

}  // namespace crescent::core::stats
