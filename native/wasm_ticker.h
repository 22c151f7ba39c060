// EpochTicker: the clock of WebAssembly deadlines. One thread per addon environment advances the
// epoch of every Wasmtime engine of that environment each kTickMs; running wasm code checks the
// epoch at function entries and loop headers, and when its store's epoch deadline is reached the
// store's callback compares the real time with the call's deadline (WasmInstance::OnEpoch).
//
// The thread starts with the first call that has a deadline, sleeps after a second without one
// (checking every 100 ms, so a race with a call that starts just then costs at most that much
// precision), and is stopped and joined by the Addon at environment teardown, before the engines
// are deleted. It never touches JS, so it does not keep the process or a worker alive.
#pragma once

#include <wasmtime.h>

#include <atomic>
#include <condition_variable>
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

  // On the environment's JS thread, at the start of every outermost call that has a deadline and
  // from the epoch callback while wasm code runs: keeps the ticker awake. Two relaxed atomic
  // accesses (a single writer, so no read-modify-write), unless the ticker is asleep.
  void Touch() {
    activity_.store(activity_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (idle_.load(std::memory_order_relaxed)) Wake();
  }

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
  std::atomic<bool> idle_{true};
};

}  // namespace hbr
