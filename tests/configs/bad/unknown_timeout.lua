-- expect: unknown_timeout.lua:4: backend "b": unknown key "timeout.conect" (did you mean "timeout.connect"?)
backend "b" {
  timeout = {
    conect = "5s",
  },
}
