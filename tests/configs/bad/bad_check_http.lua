-- expect: bad_check_http.lua:3: backend "b": "check.http" must be "METHOD /path" (got "GET health")
backend "b" {
  check = { http = "GET health" },
  server "s" {
    "127.0.0.1:8080", check = true,
  },
}
