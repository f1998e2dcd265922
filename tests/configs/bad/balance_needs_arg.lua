-- expect: balance_needs_arg.lua:3: backend "b": "balance": hdr needs its argument: "hdr(name)"
backend "b" {
  balance = "hdr",
}
