#pragma once

// The immutable, fully resolved configuration of one generation.
//
// Built by lua/config_loader from the DSL (stdlib/config.lua), which has already merged
// `defaults`, interpolated environment variables, converted durations to milliseconds and
// sizes to bytes. Nothing here refers to Lua: hooks are integer ids into the hooks table
// of each worker's Lua state (see lua/script_state.h). Once built, a Config is shared
// read-only by every worker thread (std::shared_ptr<const Config>).
//
// This folder is not in DESIGN §1's list: the structs are read by session/, backend/ and
// runtime/ alike, and the dependency direction (runtime -> session -> backend -> net)
// leaves no existing folder that all of them may include.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/net/address.h"

namespace crescent::core {

enum class Mode { kTcp, kHttp };

/// Timeouts in milliseconds, HAProxy's meaning (reference/README.md). 0 = none (wait forever).
struct Timeouts {
  uint64_t connect = 5000;    ///< server connection establishment
  uint64_t client = 30000;    ///< client-side inactivity
  uint64_t server = 30000;    ///< server-side inactivity
  uint64_t tunnel = 0;        ///< both-direction inactivity once tunnelled; 0: client/server apply
  uint64_t queue = 0;         ///< wait for a server slot; 0: same as connect
  uint64_t http_request = 0;  ///< whole request head; 0: same as client
  uint64_t http_keep_alive = 0;  ///< idle between requests; 0: same as http_request
  uint64_t client_fin = 0;       ///< half-closed client side; 0: same as client
  uint64_t server_fin = 0;       ///< half-closed server side; 0: same as server
  uint64_t handshake = 0;        ///< PROXY header and TLS handshake on accept; 0: same as client
};

/// ACL tree as declared with the DSL's `acl.*` helpers. Leaves are matches; inner nodes
/// combine. core/config/acl.h compiles it to a matcher (regexes and CIDRs precompiled).
struct AclNode {
  enum class Kind { kAll, kAny, kNot, kMatch };
  /// What a leaf samples from the request/connection.
  enum class Fetch { kPath, kUrlParam, kHdr, kHost, kMethod, kSrc, kDstPort };
  /// How a leaf compares. kFound: the sample exists (url_param/hdr present).
  enum class Op { kEq, kBeg, kEnd, kSub, kReg, kFound, kCidr, kPortRange };

  Kind kind = Kind::kMatch;
  std::vector<AclNode> children;  ///< kAll/kAny: 1..n; kNot: exactly 1

  Fetch fetch = Fetch::kPath;
  std::string arg;  ///< header name / url parameter name
  Op op = Op::kEq;
  std::vector<std::string>
      values;  ///< any one matching is a match; CIDRs as "10.0.0.0/8", ports as "80" or "8000-8080"
  bool nocase = false;
  int line = 0;  ///< config line where the ACL was written
};

/// TLS termination on a bind (`bind { ":443", tls = { ... } }`).
struct TlsBindConfig {
  struct Cert {
    std::string cert;  ///< PEM file: certificate chain, and the key when `key` is empty
    std::string key;   ///< PEM file of the private key; empty: in `cert` (HAProxy's crt)
  };
  /// The first is the default; the others are chosen by SNI from the names (SAN DNS
  /// entries, else CN) of their certificates.
  std::vector<Cert> certs;
  std::vector<std::string> alpn;  ///< e.g. {"h2", "http/1.1"}; empty: no ALPN
  std::string min_version;        ///< "1.0" .. "1.3"; empty: OpenSSL's default
  std::string ciphers;            ///< TLS <= 1.2 cipher list (OpenSSL syntax); empty: default
  std::string ciphersuites;       ///< TLS 1.3 suites; empty: default
  bool tickets = true;            ///< session tickets (keys rotated in the process)
  /// Client certificates (mTLS): kNone asks for none; kRequired refuses a handshake
  /// without a valid one; kOptional asks, records the verdict and lets Lua decide.
  enum class Verify { kNone, kOptional, kRequired };
  Verify verify = Verify::kNone;
  std::string ca;         ///< PEM file of the CAs that sign client certificates
  std::string crl;        ///< PEM file of CRLs checked against the client's certificate
  int verify_depth = -1;  ///< longest chain accepted (intermediates); -1: OpenSSL's 100
  bool enabled() const { return !certs.empty(); }
};

/// TLS to a server (`server "s" { "10.0.0.1:443", tls = { ... } }`).
struct TlsServerConfig {
  bool enabled = false;
  bool verify = true;  ///< `verify = "required"` (default) or "none"
  std::string ca;      ///< PEM file of trusted CAs; empty: the system store
  std::string sni;     ///< server name sent and verified; empty: none sent, verify the IP
  std::vector<std::string> alpn;
  std::string cert, key;  ///< client certificate; empty: none
  std::string min_version;
  bool operator==(const TlsServerConfig&) const = default;
};

/// Response compression (`compression = { ... }` on frontend/backend/listen).
struct CompressionConfig {
  bool enabled = false;
  std::vector<std::string> algos{"gzip"};  ///< in preference order: "gzip", "deflate"
  /// Content types compressed (the part before ';', exact, case-insensitive); empty:
  /// text/html, text/plain, text/css, application/javascript, application/json, ...
  std::vector<std::string> types;
  uint64_t min_size = 1024;  ///< bytes; smaller known-length responses are sent as they are
  int level = 6;             ///< zlib level 1..9
};

struct BindConfig {
  std::string text;  ///< as written, e.g. ":8080" or "unix:/run/x.sock"
  Address address;
  bool accept_proxy = false;  ///< a PROXY v1/v2 header is required first (DESIGN §7)
  int unix_mode = -1;         ///< UNIX socket permissions (e.g. 0660); -1: umask
  std::string user, group;    ///< UNIX socket owner; empty: unchanged
  TlsBindConfig tls;
  std::vector<int> threads;  ///< 1-based workers that serve this bind; empty: all
  int line = 0;
};

/// Local addresses for connections to servers (`source = ...`), against ephemeral port
/// exhaustion (reference/002). Addresses are used in turn, one per connection. Without a
/// port range the kernel picks the port at connect time (IP_BIND_ADDRESS_NO_PORT), so one
/// source address serves every destination with its whole ephemeral range; with a range
/// (`"127.0.0.2:20000-30000"`) ports are taken in turn from it.
struct SourceConfig {
  std::vector<Address> addresses;  ///< IPs, port 0; empty = no binding (the kernel decides)
  uint16_t port_min = 0;           ///< 0 = no range
  uint16_t port_max = 0;
  bool empty() const { return addresses.empty(); }
};

/// Health checking of one server (reference/004; HAProxy's `check`, `inter`, `rise`, ...).
/// Resolved per server: the backend's `check` table merged with the server's own.
struct HealthCheckConfig {
  enum class Kind {
    kTcp,   ///< connect (then `send`/`expect_body` if given)
    kHttp,  ///< `http = "GET /health"`: a request; up on `expect` (default 2xx/3xx)
    // `type = "..."`, HAProxy's option mysql-check, pgsql-check, redis-check, smtpchk
    // (core/backend/check_protocol.h):
    kMysql,  ///< handshake, then the login of `user` (if set) and COM_QUIT
    kPgsql,  ///< StartupMessage for `user`
    kRedis,  ///< PING, +PONG
    kSmtp,   ///< 220 greeting, EHLO `domain`, 250
  };
  /// Passive checks (HAProxy's `observe`): consecutive errors seen by real traffic.
  enum class Observe { kNone, kLayer4, kLayer7 };

  bool enabled = false;  ///< the server has `check = true` (or a table)
  Kind kind = Kind::kTcp;
  std::string method = "GET";  ///< kHttp
  std::string uri = "/";       ///< kHttp
  std::string host;            ///< kHttp: Host header; empty = the server's address
  std::string send;            ///< kTcp: bytes sent after connecting
  std::string user;            ///< kMysql (optional), kPgsql (required): who logs in
  /// kSmtp: the EHLO argument
  std::string domain = "localhost";
  /// Status ranges that mean up (inclusive pairs); empty = 200..399.
  std::vector<std::pair<int, int>> expect_status;
  std::string expect_body;  ///< the response must contain this (first 16 KiB)
  int expect_hook = 0;      ///< >0: Lua `expect = function(res, server)` decides
  uint64_t inter = 2000;    ///< ms between checks while up
  uint64_t fastinter = 0;   ///< ms while going up or down; 0 = inter
  uint64_t downinter = 0;   ///< ms while down; 0 = inter
  uint64_t timeout = 0;     ///< ms for one check; 0 = min(inter, timeout connect)
  int rise = 2;             ///< consecutive successes to go up
  int fall = 3;             ///< consecutive failures to go down
  uint16_t port = 0;        ///< 0 = the server's port
  Observe observe = Observe::kNone;
  int error_limit = 10;  ///< consecutive observed errors that mark the server down
};

/// HAProxy's agent-check (`agent = { port, inter, send, addr }`): a TCP agent whose one-line
/// reply sets the server's weight, admin state and agent health (core/backend/agent_check.h).
struct AgentCheckConfig {
  bool enabled = false;   ///< an `agent` table applies (the server's, else its backend's)
  Address address;        ///< where the agent listens: `addr` (else the server's IP), `port`
  uint64_t inter = 2000;  ///< ms between two agent checks
  std::string send;       ///< bytes sent once connected (HAProxy's agent-send); may be empty
};

struct ServerConfig {
  std::string name;
  std::string text;  ///< address as written
  Address address;
  int id = 0;               ///< 1-based position in its backend (HAProxy's server id; `first`)
  int weight = 1;           ///< 0..256; 0 takes no new traffic
  int maxconn = 0;          ///< 0 = unlimited
  int maxqueue = 0;         ///< requests that may wait for this server; 0 = unlimited
  bool backup = false;      ///< used only when no non-backup server is up
  uint64_t slowstart = 0;   ///< ms over which the weight ramps up after recovery
  HealthCheckConfig check;  ///< resolved: backend settings + server overrides
  AgentCheckConfig agent;   ///< resolved: backend settings + server overrides
  SourceConfig source;      ///< resolved: the server's, else the backend's
  int send_proxy = 0;       ///< PROXY protocol version sent first (1, 2); 0 = none
  /// TLVs of a v2 header: bits of kProxyV2Ssl, kProxyV2Authority, ...
  unsigned proxy_v2_options = 0;
  TlsServerConfig tls;
  int line = 0;
};

/// `proxy_v2_options` bits (ServerConfig::proxy_v2_options).
inline constexpr unsigned kProxyV2Ssl = 1u << 0;
inline constexpr unsigned kProxyV2Authority = 1u << 1;
inline constexpr unsigned kProxyV2Alpn = 1u << 2;
inline constexpr unsigned kProxyV2UniqueId = 1u << 3;
inline constexpr unsigned kProxyV2Crc32c = 1u << 4;

/// Built-in balancing algorithms (HAProxy's names; docs/config.md).
enum class BalanceAlgo {
  kRoundRobin,  ///< smooth weighted round robin, dynamic weights
  kStaticRr,    ///< weighted round robin on the configured weights
  kLeastConn,   ///< fewest (current + queued) / weight; ties in turn
  kFirst,       ///< lowest id that has a free slot
  kSource,      ///< hash of the client IP
  kUri,         ///< hash of the path (without the query)
  kUrlParam,    ///< hash of a query parameter (balance_arg); roundrobin when absent
  kHdr,         ///< hash of a header (balance_arg); roundrobin when absent
  kRandom,      ///< power of two random choices, lower load wins
};

enum class HashType {
  kMapBased,    ///< hash modulo the total weight of usable servers: most keys move on change
  kConsistent,  ///< hash ring: only the keys of a changed server move
};

/// A Lua balancer (`balancer { name, init, pick, on_release }`): hook ids, 0 = absent.
struct LuaBalancerConfig {
  std::string name;
  int pick_hook = 0;
  int init_hook = 0;
  int release_hook = 0;
  bool enabled() const { return pick_hook > 0; }
};

/// A page served instead of crescent's own for one status: HAProxy's `errorfile`, a raw
/// HTTP/1 response (status line, fields, empty line, body) read and checked when the
/// config loads (lua/config_builder.cc): it parses, its status is the one it is
/// configured for, and it fits tune.bufsize. Content-Length, Transfer-Encoding and
/// Connection fields of the file are dropped; crescent frames the body itself.
struct ErrorFile {
  int status = 0;
  std::string reason;  ///< the file's reason phrase ("" when it has none)
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string path;  ///< as written in the config
};

/// The error pages of one level (defaults, frontend or backend): `errorfiles` by status,
/// and `error_page = function(status, txn)` (a Lua hook id, 0: none). At one level a file
/// for the status comes before the function; a function that returns nil passes on.
struct ErrorPages {
  std::map<int, ErrorFile> files;
  int hook = 0;
  bool empty() const { return files.empty() && hook == 0; }
};

/// Which requests may go on an idle pooled connection (HAProxy's `http-reuse`).
enum class HttpReuse {
  kNever,   ///< none: every request on a new connection
  kSafe,    ///< not a client connection's first request, nor one with a body
  kAlways,  ///< any request
};

struct BackendConfig {
  std::string name;
  Mode mode = Mode::kHttp;
  Timeouts timeout;
  std::string balance = "roundrobin";  ///< the algorithm as written (logs, stats)
  BalanceAlgo algo = BalanceAlgo::kRoundRobin;
  std::string balance_arg;  ///< header name for kHdr, parameter for kUrlParam
  HashType hash_type = HashType::kMapBased;
  LuaBalancerConfig lua_balancer;  ///< when enabled, it picks; `algo` is roundrobin (fallback)
  int retries = 3;
  bool redispatch = false;
  bool forwardfor = false;
  std::vector<ServerConfig> servers;
  int service_hook = 0;        ///< >0: a Lua service answers instead of servers (hook id)
  int http_response_hook = 0;  ///< >0: `http_response = function(txn)`, before the frontend's
  /// Idle server connections (`pool = { idle_timeout, max_idle }`, HAProxy's
  /// pool-purge-delay and pool-max-conn): how long one is kept (ms; shortened to the
  /// server's `Keep-Alive: timeout=`), and how many per server and worker.
  uint64_t pool_idle_timeout = 3000;
  int pool_max_idle = 64;
  HttpReuse http_reuse = HttpReuse::kSafe;
  CompressionConfig compression;
  ErrorPages errors;  ///< the backend's own errorfiles / error_page (first in line)
  ErrorPages
      default_errors;  ///< those of the defaults it was declared under (after the frontend's)
  int line = 0;
};

class Acl;  // core/config/acl.h: an AclNode compiled to a matcher

struct UseBackendRule {
  std::string backend;
  size_t backend_index = 0;         ///< into Config::backends
  std::shared_ptr<const Acl> when;  ///< null: always
  int line = 0;
};

/// `admin { ... }` (docs/observability.md): the admin listener's settings. Its frontend
/// (named "admin") is answered by the built-in admin service, never by a backend.
struct AdminConfig {
  struct User {
    std::string name;
    std::string hash;  ///< crypt(3) hash ("$6$salt$..."); never a plaintext password
  };
  std::vector<User> users;                  ///< `Authorization: Basic`, sorted by name
  std::vector<std::string> tokens;          ///< `Authorization: Bearer <token>`
  std::vector<std::string> read_only;       ///< user names that may only GET
  std::string metrics_prefix = "crescent";  ///< `metrics = { prefix = ... }`
};

struct FrontendConfig {
  std::string name;
  Mode mode = Mode::kHttp;
  std::vector<BindConfig> binds;
  Timeouts timeout;
  int maxconn = 0;  ///< 0 = only the global limit
  bool forwardfor = false;
  std::vector<UseBackendRule> use_backend;
  std::string default_backend;     ///< empty: none (503 / close)
  int default_backend_index = -1;  ///< into Config::backends, -1: none
  int http_request_hook = 0;       ///< >0: Lua hook id
  int http_response_hook = 0;      ///< >0: `http_response = function(txn)` hook id
  bool log = true;                 ///< one httplog/tcplog line per exchange/session
  int log_hook = 0;                ///< >0: `log = function(txn, info)`: the log phase
  int tcp_request_hook = 0;        ///< >0: `tcp_request = function(conn)`, before any protocol
  uint64_t inspect_delay = 5000;   ///< ms conn.sni / conn:peek() wait by default
  CompressionConfig compression;
  ErrorPages errors;          ///< the frontend's own errorfiles / error_page
  ErrorPages default_errors;  ///< those of the defaults it was declared under
  /// Set on the admin listener's frontend only: its requests go to the built-in admin
  /// service (Exchange::runBuiltinService).
  std::shared_ptr<const AdminConfig> admin;
  int line = 0;
};

struct GlobalConfig {
  int threads = 0;           ///< worker threads; 0 = number of cores
  int maxconn = 0;           ///< process-wide concurrent client connections; 0 = unlimited
  uint64_t bufsize = 16384;  ///< bytes per pooled buffer; also the largest request/response head
  /// `tune = { max_headers = N }`: field lines a request or response head may have
  /// (HAProxy's tune.http.maxhdr); one more gets 400 (requests) or 502 (responses).
  size_t max_headers = 101;
  /// `tune.max_service_body`: bytes of request body a Lua service may receive; more: 413.
  uint64_t max_service_body = 8 * 1024 * 1024;
  /// `tune.body_budget`: request-body bytes the whole process holds in memory at once
  /// (the bodies Lua services gather); a request that would pass it gets 503. 0: none.
  uint64_t body_budget = 256 * 1024 * 1024;
  /// ms an old generation (after a reload) or a soft-stopping process keeps its sessions;
  /// what is left after is closed, counted and logged. 0 = no limit (DESIGN §3).
  uint64_t hard_stop_after = 0;
  /// Generations that may live at once (the current one included); a reload that would
  /// pass it first closes the oldest old generation's sessions. 0 = no limit.
  int max_generations = 0;
  /// Reload when the script or a Lua file it required changes (debounced).
  bool watch = false;
  /// LuaJIT's compiler on in the workers' states: faster CPU-heavy hooks, but a loop
  /// compiled into a trace is no longer cut by the time budget (docs/lua-api.md).
  bool lua_jit = false;
  /// `lua = { maxmem = "256m", budget = "1s", max_timers = 1024 }`: limits of each Lua
  /// state (one per worker per generation, and the main thread's). A reload applies new
  /// values to the new generation's states.
  struct Lua {
    /// Bytes one state may hold while Lua runs (HAProxy's tune.lua.maxmem); an
    /// allocation past it fails that call with a Lua error. 0 = no cap.
    uint64_t maxmem = 256ull * 1024 * 1024;
    /// ms of Lua running time allowed to one phase (hook, service, pick, callback)
    /// between waits; 0 = unlimited.
    uint64_t budget_ms = 1000;
    /// Timers pending at once per state (crescent.timer.at / every).
    uint64_t max_timers = 1024;
  } lua;
  /// `runtime = { socket = path, mode = "0600", expose_fd_listeners = true }`: the runtime
  /// API's UNIX socket (docs/reload.md). Empty path: no runtime API.
  struct Runtime {
    std::string socket;
    int mode = 0600;                   ///< permissions of the socket file
    bool expose_fd_listeners = false;  ///< `_getsocks`: hand listeners to a new binary
  } runtime;
  /// ms a worker's loop may spend in one turn before the watchdog reports it stuck
  /// (core/runtime/watchdog.h); 0 = no watchdog.
  uint64_t watchdog_ms = 2000;
  /// What the watchdog does about a stuck worker: abort the process (the service manager
  /// restarts it), or only log.
  enum class OnStuck { kAbort, kLog } on_stuck = OnStuck::kAbort;
  /// Worker (1-based) -> CPU it is pinned to (`cpu_map = { [1] = 0, [2] = 1 }`).
  std::vector<std::pair<int, int>> cpu_map;
};

struct Config {
  std::string path;    ///< the script's path as given on the command line
  std::string script;  ///< the script's text (for `GET /v1/config` later)
  GlobalConfig global;
  std::vector<FrontendConfig> frontends;  ///< `listen` adds one frontend and one backend
  std::vector<BackendConfig> backends;
  /// `on_reload(function(prev, next) ... end)` hook ids, in declaration order.
  std::vector<int> reload_hooks;
  /// Lua files the script required, next to it (global.watch watches them with `path`).
  std::vector<std::string> files;
  /// Their texts as the evaluation read them (same order): the workers' states run these.
  std::vector<std::string> file_texts;

  /// Index of the frontend with this name, or -1.
  int findFrontend(std::string_view name) const {
    for (size_t i = 0; i < frontends.size(); ++i)
      if (frontends[i].name == name) return static_cast<int>(i);
    return -1;
  }
  /// Index of the backend with this name, or -1.
  int findBackend(std::string_view name) const {
    for (size_t i = 0; i < backends.size(); ++i)
      if (backends[i].name == name) return static_cast<int>(i);
    return -1;
  }
};

}  // namespace crescent::core
