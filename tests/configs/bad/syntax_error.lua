-- expect: syntax_error.lua:4: '}' expected (to close '{' at line 2) near 'default_backend'
frontend "public" {
  bind { "127.0.0.1:8080" }
  default_backend = "servers",
}
