-- expect: bad_duration.lua:5: defaults: "timeout.client": invalid duration "30x"
defaults {
  timeout = {
    connect = "5s",
    client = "30x",
  },
}
