-- expect: env_message.lua:3: environment variable "CRESCENT_TEST_SURELY_UNSET_VARIABLE" is not set: give the listen address
frontend "public" {
  bind { "${CRESCENT_TEST_SURELY_UNSET_VARIABLE:?give the listen address}" },
}
