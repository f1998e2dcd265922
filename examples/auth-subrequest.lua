-- auth-subrequest: every request is authorized by an HTTP call to an auth service first
-- (nginx's auth_request, Envoy's ext_authz), from an http_request hook that waits on
-- crescent.http.request without blocking the worker.
--
--   AUTH_URL=http://127.0.0.1:9000/auth APP_ADDR=127.0.0.1:9001 LISTEN=127.0.0.1:8080 \
--     crescent -f examples/auth-subrequest.lua
--   curl -H 'Authorization: Bearer good' http://127.0.0.1:8080/   -> the app's answer
--   curl http://127.0.0.1:8080/                                    -> 401
--
-- The auth service answers 2xx to let a request through, 401 or 403 to refuse it; it
-- sees the client's Authorization header and the original method and URI. Its answer's
-- X-User header reaches the app. The connections to it are kept alive and reused.

local AUTH_URL = env("AUTH_URL", "http://127.0.0.1:9000/auth")  -- code reads env(); DSL strings take ${...}

global { threads = tonumber(env("THREADS", "2")) }

defaults {
  mode = "http",
  timeout = { connect = "2s", client = "30s", server = "30s" },
}

frontend "public" {
  bind { "${LISTEN:-127.0.0.1:8080}" },
  http_request = function(txn)
    local res, err = crescent.http.request{
      url = AUTH_URL,
      timeout = 2000,
      headers = {
        authorization = txn.req:header("authorization") or "",
        ["x-original-method"] = txn.req.method,
        ["x-original-uri"] = txn.req.target,
      },
    }
    if not res then
      log.warning("auth service unreachable: %s", err)
      return txn:reply(503, "authorization unavailable\n")
    end
    if res.status == 401 or res.status == 403 then return txn:deny(res.status) end
    if res.status < 200 or res.status > 299 then
      return txn:reply(502, "authorization failed (" .. res.status .. ")\n")
    end
    txn.ctx.user = res.headers["x-user"]
    if txn.ctx.user then txn.req:set_header("x-user", txn.ctx.user) end
  end,
  log = function(txn, info)
    return string.format("%s %s %s -> %d user=%s %dms", txn.src, txn.req.method, txn.req.target,
                         info.status, txn.ctx.user or "-", info.Ta)
  end,
  default_backend = "app",
}

backend "app" {
  server "app1" { "${APP_ADDR:-127.0.0.1:9001}" },
}
