-- expect: missing_body.lua:2: backend "b": missing body (write backend "b" { ... })
backend "b"
