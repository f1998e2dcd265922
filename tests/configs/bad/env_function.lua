-- expect: env_function.lua:2: environment variable "CRESCENT_TEST_SURELY_UNSET_VARIABLE" is not set
local addr = env("CRESCENT_TEST_SURELY_UNSET_VARIABLE")
