#include "wasm_ticker.h"

#include <chrono>
#include <ctime>

namespace hbr {

static constexpr int kIdleAfterTicks = 1000 / EpochTicker::kTickMs;  // one second without activity
static constexpr std::chrono::milliseconds kIdleCheck{100};

uint64_t CoarseNowNs() {
#if defined(CLOCK_MONOTONIC_COARSE)
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
#else
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
#endif
}

void EpochTicker::AddEngine(wasm_engine_t* engine) {
  std::lock_guard<std::mutex> lock(mu_);
  engines_.push_back(engine);
}

void EpochTicker::Wake() {
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_) return;
  idle_.store(false, std::memory_order_relaxed);
  if (!started_) {
    started_ = true;
    thread_ = std::thread(&EpochTicker::Run, this);
  }
  cv_.notify_one();
}

void EpochTicker::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void EpochTicker::Run() {
  using Clock = std::chrono::steady_clock;
  uint64_t last = activity_.load(std::memory_order_relaxed);
  int quiet = 0;
  Clock::time_point next = Clock::now() + std::chrono::milliseconds(kTickMs);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (idle_.load(std::memory_order_relaxed)) {
      cv_.wait_for(lock, kIdleCheck);
      uint64_t now = activity_.load(std::memory_order_relaxed);
      if (now != last) {  // a call started without seeing that the ticker slept
        last = now;
        idle_.store(false, std::memory_order_relaxed);
      }
      continue;
    }
    cv_.wait_until(lock, next);
    if (stop_) break;
    // Woken early (a notify, or spuriously): the epoch waits for its time, so that a deadline of
    // Ticks(ms) is never reached before ms.
    Clock::time_point now = Clock::now();
    if (now < next) continue;
    for (wasm_engine_t* e : engines_) wasmtime_engine_increment_epoch(e);
    next = now + std::chrono::milliseconds(kTickMs);
    uint64_t seen = activity_.load(std::memory_order_relaxed);
    if (seen != last || busy_.load(std::memory_order_relaxed) != 0) {
      last = seen;
      quiet = 0;
    } else if (++quiet >= kIdleAfterTicks) {
      quiet = 0;
      idle_.store(true, std::memory_order_relaxed);
    }
  }
}

}  // namespace hbr
