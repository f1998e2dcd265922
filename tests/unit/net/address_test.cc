#include "core/net/address.h"

#include <gtest/gtest.h>

using crescent::core::Address;

TEST(Address, ParsesIpv4AndWildcard) {
  auto a = Address::parse("127.0.0.1:8080");
  ASSERT_TRUE(a.ok()) << a.message();
  EXPECT_EQ(a->toString(), "127.0.0.1:8080");
  auto w = Address::parse(":80");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->toString(), "0.0.0.0:80");
}

TEST(Address, ParsesIpv6AndUnix) {
  auto a = Address::parse("[::1]:443");
  ASSERT_TRUE(a.ok()) << a.message();
  EXPECT_EQ(a->toString(), "[::1]:443");
  auto u = Address::parse("unix:/tmp/x.sock");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->unixPath(), "/tmp/x.sock");
  auto ab = Address::parse("unix:@name");
  ASSERT_TRUE(ab.ok());
  EXPECT_EQ(ab->unixPath(), "@name");
}

TEST(Address, RejectsBadInput) {
  auto a = Address::parse("10.0.0.1:99999");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.message().find("port out of range"), std::string::npos);
  EXPECT_FALSE(Address::parse("nohost").ok());
  EXPECT_FALSE(Address::parse("300.1.1.1:80").ok());
  EXPECT_FALSE(Address::parse("::1:80").ok());
}
