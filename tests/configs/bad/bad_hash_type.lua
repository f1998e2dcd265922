-- expect: bad_hash_type.lua:4: backend "b": "hash_type" must be "map-based" or "consistent" (got "ring")
backend "b" {
  balance = "source",
  hash_type = "ring",
}
