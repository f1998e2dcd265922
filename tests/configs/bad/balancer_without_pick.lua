-- expect: balancer_without_pick.lua:2: balancer "nopick": missing "pick" function
local b = balancer {
  name = "nopick",
}
