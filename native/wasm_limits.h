// The store resource limiter implemented on the Rust side of the Wasmtime library
// (deps/wasmtime/src/lib.rs): caps on memories and tables that also count refused growths.
#pragma once

#include <wasmtime.h>

#include <cstdint>

extern "C" {

// Owned by the C++ side (one per WasmInstance, at a fixed address for the store's lifetime).
struct hb_limits_t {
  uint64_t max_memory_bytes;      // cap on each memory; 0: its declared maximum, else the default
  uint64_t default_memory_bytes;  // cap on a memory that declares no maximum (when the above is 0)
  uint64_t max_table_elements;    // cap on each table
  uint64_t refused;               // growths refused since the host reset it
  uint64_t refused_cap;           // about the last one: the cap (0: the module's maximum or the OS),
  uint64_t refused_desired;       // what was asked (bytes or elements),
  uint8_t refused_table;          // and whether it was a table
};

// Makes `limits` the limiter of `store`. Precondition: `limits` outlives the store, and is not
// written while wasm code of the store runs.
void hb_store_limiter(wasmtime_store_t* store, hb_limits_t* limits);

}  // extern "C"
