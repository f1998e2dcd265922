-- Environment interpolation with defaults: loads with nothing set.
local threads = tonumber(env("CRESCENT_GOOD_THREADS", "1"))

global { threads = threads, maxconn = "${CRESCENT_GOOD_MAXCONN:-500}" }

frontend "public" {
  bind { "${CRESCENT_GOOD_ADDR:-127.0.0.1:8080}" },
  timeout = { client = "${CRESCENT_GOOD_CLIENT_TIMEOUT:-45s}" },
  default_backend = "servers",
}

backend "servers" {
  server "s1" { "${CRESCENT_GOOD_SERVER:-127.0.0.1:9001}" },
  server "literal" { "unix:/tmp/$${not-a-variable}.sock" },
}
