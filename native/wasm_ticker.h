// EpochTicker: the clock of WebAssembly deadlines. One thread per addon environment advances the
// epoch of every Wasmtime engine of that environment, at most once every kTickMs of real time.
// Running wasm code compares the epoch with its store's deadline at function entries and loop
// headers, and traps (Trap::Interrupt) once it is reached: a call with a time limit of `ms` sets
// its store's deadline Ticks(ms) ahead, which the epoch cannot reach before `ms` have passed. (This
// check is hb-runtimes' patch on Wasmtime's: deps/wasmtime/patches/README.md.)
//
// The thread starts with the first call that has a deadline, keeps ticking while such a call
// runs, sleeps after a second without one (checking every 100 ms, so a race with a call that
// starts just then costs at most that much precision), and is stopped and joined by the Addon at
// environment teardown, before the engines are deleted. It never touches JS, so it does not keep
// the process or a worker alive.
#pragma once

#include <wasmtime.h>

#include <atomic>
#include <condition_variable>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace hbr {

// Monotonic time in nanoseconds from the coarse clock (a few ms of resolution, no hardware read),
// which is all a deadline of milliseconds needs.
uint64_t CoarseNowNs();

class EpochTicker {
 public:
  static constexpr int kTickMs = 5;

  EpochTicker() = default;
  EpochTicker(const EpochTicker&) = delete;
  EpochTicker& operator=(const EpochTicker&) = delete;
  ~EpochTicker() { Stop(); }

  void AddEngine(wasm_engine_t* engine);

  // The epoch deadline (ticks ahead of the current epoch) of a call limited to `ms`: the epoch
  // advances at most once every kTickMs and the first advance may come at once, so reaching it
  // takes at least `ms`.
  static uint64_t Ticks(double ms) { return static_cast<uint64_t>(std::ceil(ms / kTickMs)) + 1; }

  // On the environment's JS thread, around every outermost call that has a deadline: keeps the
  // ticker awake until the call ends. Relaxed atomic accesses (a single writer, so no
  // read-modify-write), unless the ticker is asleep.
  void Enter() {
    busy_.store(busy_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    activity_.store(activity_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (idle_.load(std::memory_order_relaxed)) Wake();
  }
  void Leave() { busy_.store(busy_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed); }

  // Stops and joins the thread. Idempotent.
  void Stop();

 private:
  void Wake();
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  std::vector<wasm_engine_t*> engines_;  // guarded by mu_
  bool started_ = false;                 // guarded by mu_
  bool stop_ = false;                    // guarded by mu_
  std::atomic<uint64_t> activity_{0};
  std::atomic<uint32_t> busy_{0};  // calls with a deadline running now
  std::atomic<bool> idle_{true};
};

}  // namespace hbr
