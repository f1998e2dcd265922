-- expect: unset_env.lua:4: environment variable "CRESCENT_TEST_SURELY_UNSET_VARIABLE" is not set
backend "b" {
  server "s1" {
    "${CRESCENT_TEST_SURELY_UNSET_VARIABLE}",
  },
}
