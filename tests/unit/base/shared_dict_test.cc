// core/base/shared_dict: values, expiry (injected clock), incr, limits, the registry and
// concurrent use.

#include "core/base/shared_dict.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace crescent::core {
namespace {

using E = SharedDictError;
using ::testing::UnorderedElementsAre;

// A dictionary whose clock the test moves.
struct Clocked {
  std::shared_ptr<std::atomic<int64_t>> t = std::make_shared<std::atomic<int64_t>>(1000);
  SharedDict dict;
  explicit Clocked(SharedDict::Limits limits = {})
      : dict("test", limits, [t = t] { return t->load(); }) {}
  void advance(int64_t ms) { *t += ms; }
};

TEST(SharedDict, StoresEachTypeAndNilDeletes) {
  SharedDict d("types");
  EXPECT_EQ(d.set("b", true), E::kOk);
  EXPECT_EQ(d.set("n", 1.5), E::kOk);
  EXPECT_EQ(d.set("s", std::string("text\0with nul", 13)), E::kOk);
  EXPECT_EQ(d.get("b"), SharedValue(true));
  EXPECT_EQ(d.get("n"), SharedValue(1.5));
  EXPECT_EQ(d.get("s"), SharedValue(std::string("text\0with nul", 13)));
  EXPECT_EQ(d.get("missing"), SharedValue());

  EXPECT_EQ(d.set("n", std::string("now a string")), E::kOk);
  EXPECT_EQ(d.get("n"), SharedValue(std::string("now a string")));
  EXPECT_EQ(d.set("n", SharedValue()), E::kOk);  // nil deletes
  EXPECT_EQ(d.get("n"), SharedValue());
  d.remove("b");
  d.remove("never there");
  EXPECT_EQ(d.get("b"), SharedValue());
  EXPECT_EQ(d.size(), 1u);
}

TEST(SharedDict, AddAndReplace) {
  SharedDict d("add");
  EXPECT_EQ(d.replace("k", 1.0), E::kNotFound);
  EXPECT_EQ(d.add("k", 1.0), E::kOk);
  EXPECT_EQ(d.add("k", 2.0), E::kExists);
  EXPECT_EQ(d.get("k"), SharedValue(1.0));
  EXPECT_EQ(d.replace("k", 3.0), E::kOk);
  EXPECT_EQ(d.get("k"), SharedValue(3.0));
}

TEST(SharedDict, TtlExpiresLazilyWithTheClock) {
  Clocked c;
  EXPECT_EQ(c.dict.set("short", std::string("v"), 0.5), E::kOk);
  EXPECT_EQ(c.dict.set("forever", std::string("v")), E::kOk);
  EXPECT_EQ(c.dict.set("tiny", 1.0, 0.0001), E::kOk);  // rounds up to 1 ms, not to "never"
  c.advance(499);
  EXPECT_EQ(c.dict.get("short"), SharedValue(std::string("v")));
  EXPECT_EQ(c.dict.get("tiny"), SharedValue());
  c.advance(1);
  EXPECT_EQ(c.dict.get("short"), SharedValue());
  EXPECT_EQ(c.dict.get("forever"), SharedValue(std::string("v")));
  EXPECT_THAT(c.dict.keys(), UnorderedElementsAre("forever"));

  // An expired key is absent for add/replace/incr too.
  EXPECT_EQ(c.dict.set("k", 5.0, 1), E::kOk);
  c.advance(1000);
  EXPECT_EQ(c.dict.replace("k", 1.0), E::kNotFound);
  double out = 0;
  EXPECT_EQ(c.dict.incr("k", 1, out), E::kNotFound);
  EXPECT_EQ(c.dict.add("k", 7.0), E::kOk);
  EXPECT_EQ(c.dict.get("k"), SharedValue(7.0));
}

TEST(SharedDict, TtlWithTheRealClock) {
  SharedDict d("real-clock");
  ASSERT_EQ(d.set("k", 1.0, 0.05), E::kOk);
  EXPECT_EQ(d.get("k"), SharedValue(1.0));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (d.get("k") != SharedValue() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // bounded poll
  }
  EXPECT_EQ(d.get("k"), SharedValue());
}

TEST(SharedDict, Incr) {
  Clocked c;
  SharedDict& d = c.dict;
  double out = 0;
  EXPECT_EQ(d.incr("n", 1, out), E::kNotFound);
  EXPECT_EQ(d.incr("n", 2, out, 10.0, 1), E::kOk);  // init + delta, with init's ttl
  EXPECT_EQ(out, 12);
  EXPECT_EQ(d.incr("n", -0.5, out), E::kOk);
  EXPECT_EQ(out, 11.5);
  EXPECT_EQ(d.incr("n", 1, out, 100.0), E::kOk);  // init ignored when the key exists
  EXPECT_EQ(out, 12.5);
  c.advance(1000);  // the init ttl applies; incr did not extend it
  EXPECT_EQ(d.get("n"), SharedValue());

  EXPECT_EQ(d.set("s", std::string("x")), E::kOk);
  EXPECT_EQ(d.incr("s", 1, out), E::kNotANumber);
  EXPECT_EQ(d.set("b", false), E::kOk);
  EXPECT_EQ(d.incr("b", 1, out, 0.0), E::kNotANumber);
}

TEST(SharedDict, KeyAndValueLimits) {
  SharedDict::Limits limits;
  limits.max_key_bytes = 8;
  limits.max_value_bytes = 16;
  SharedDict d("limits", limits);
  EXPECT_EQ(d.set("", 1.0), E::kEmptyKey);
  EXPECT_EQ(d.set("123456789", 1.0), E::kKeyTooLong);
  EXPECT_EQ(d.set("12345678", 1.0), E::kOk);
  EXPECT_EQ(d.set("v", std::string(17, 'x')), E::kValueTooLarge);
  EXPECT_EQ(d.set("v", std::string(16, 'x')), E::kOk);
  EXPECT_EQ(d.add("", 1.0), E::kEmptyKey);
  double out = 0;
  EXPECT_EQ(d.incr("", 1, out, 0.0), E::kEmptyKey);
  EXPECT_STREQ(sharedDictErrorText(E::kNoMemory), "no memory");
  EXPECT_STREQ(sharedDictErrorText(E::kNotANumber), "not a number");
}

TEST(SharedDict, ByteBudgetGivesNoMemoryAndExpiredEntriesMakeRoom) {
  SharedDict::Limits limits;
  limits.max_bytes = 4 * (SharedDict::kEntryOverhead + 1 + 100);
  Clocked c(limits);
  SharedDict& d = c.dict;
  std::string v(100, 'x');
  for (const char* k : {"a", "b", "c"}) ASSERT_EQ(d.set(k, v), E::kOk);
  ASSERT_EQ(d.set("t", v, 1), E::kOk);
  EXPECT_EQ(d.bytes(), limits.max_bytes);
  EXPECT_EQ(d.set("e", v), E::kNoMemory);
  EXPECT_EQ(d.get("e"), SharedValue());
  EXPECT_EQ(d.set("a", v + "y"), E::kNoMemory);  // growing an entry counts too
  EXPECT_EQ(d.get("a"), SharedValue(v));         // and the old value stays
  EXPECT_EQ(d.set("a", 1.0), E::kOk);            // shrinking it frees room
  EXPECT_EQ(d.set("e", 2.0), E::kOk);
  EXPECT_EQ(d.set("f", v), E::kNoMemory);

  c.advance(1000);  // "t" expired: its room is reclaimed when needed
  EXPECT_EQ(d.set("f", v), E::kOk);
  EXPECT_EQ(d.size(), 5u);

  d.flushAll();
  EXPECT_EQ(d.size(), 0u);
  EXPECT_EQ(d.bytes(), 0u);
  EXPECT_EQ(d.get("a"), SharedValue());
}

TEST(SharedDict, KeysHonoursMax) {
  SharedDict d("keys");
  for (int i = 0; i < 10; ++i) ASSERT_EQ(d.set("k" + std::to_string(i), 1.0 * i), E::kOk);
  EXPECT_EQ(d.keys(3).size(), 3u);
  EXPECT_EQ(d.keys(0).size(), 10u);
  EXPECT_EQ(d.keys(100).size(), 10u);
}

TEST(SharedDict, RegistryGivesTheSameDictByName) {
  auto a = SharedDicts::get("registry-test");
  auto b = SharedDicts::get("registry-test");
  auto other = SharedDicts::get("registry-test-2");
  EXPECT_EQ(a.get(), b.get());
  EXPECT_NE(a.get(), other.get());
  EXPECT_EQ(a->name(), "registry-test");
  ASSERT_EQ(a->set("k", 1.0), E::kOk);
  a.reset();
  b.reset();
  // Kept for the process's life even when nobody holds it (a reload in between).
  EXPECT_EQ(SharedDicts::get("registry-test")->get("k"), SharedValue(1.0));
}

TEST(SharedDict, ConcurrentIncrAddAndSetFromSeveralThreads) {
  auto d = SharedDicts::get("concurrency-test");
  d->flushAll();
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::atomic<int> added{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each thread looks the dict up by name, as each worker's Lua state does.
      auto mine = SharedDicts::get("concurrency-test");
      double out = 0;
      for (int i = 0; i < kPerThread; ++i) {
        EXPECT_EQ(mine->incr("hits", 1, out, 0.0), E::kOk);
        if (mine->add("once-" + std::to_string(i % 100), 1.0 * t) == E::kOk) ++added;
        EXPECT_EQ(mine->set("t" + std::to_string(t), 1.0 * i), E::kOk);
        mine->get("hits");
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(d->get("hits"), SharedValue(double{kThreads} * kPerThread));
  EXPECT_EQ(added.load(), 100);  // exactly one add per key won
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(d->get("t" + std::to_string(t)), SharedValue(double{kPerThread - 1}));
  }
  EXPECT_EQ(d->size(), 1u + 100u + kThreads);
}

}  // namespace
}  // namespace crescent::core
