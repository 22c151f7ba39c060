//! Links Wasmtime's C API into one static library for the hb-runtimes addon, plus the helpers the
//! C++ side takes from Rust: the XXH3-64 checksum used by snapshot blobs, and a store resource
//! limiter that reports refused growths.
pub use wasmtime_c_api::*;

/// XXH3-64 of `len` bytes at `data` (seed 0).
///
/// # Safety
/// `data` must point to `len` readable bytes (or be anything when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn hb_xxh3_64(data: *const u8, len: usize) -> u64 {
    if len == 0 {
        return xxhash_rust::xxh3::xxh3_64(&[]);
    }
    xxhash_rust::xxh3::xxh3_64(std::slice::from_raw_parts(data, len))
}

/// A streaming XXH3-64 (seed 0): the same result as `hb_xxh3_64` over the concatenation of every
/// `hb_xxh3_update`, for snapshots written or read in chunks (files larger than any buffer).
pub struct hb_xxh3_t(xxhash_rust::xxh3::Xxh3);

/// A new streaming state; free it with `hb_xxh3_free`.
#[no_mangle]
pub extern "C" fn hb_xxh3_new() -> *mut hb_xxh3_t {
    Box::into_raw(Box::new(hb_xxh3_t(xxhash_rust::xxh3::Xxh3::new())))
}

/// Adds `len` bytes at `data`.
///
/// # Safety
/// `state` is from `hb_xxh3_new` and not freed; `data` points to `len` readable bytes (or is
/// anything when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn hb_xxh3_update(state: *mut hb_xxh3_t, data: *const u8, len: usize) {
    if len != 0 {
        (*state).0.update(std::slice::from_raw_parts(data, len));
    }
}

/// The checksum of everything added so far (the state stays usable).
///
/// # Safety
/// `state` is from `hb_xxh3_new` and not freed.
#[no_mangle]
pub unsafe extern "C" fn hb_xxh3_digest(state: *const hb_xxh3_t) -> u64 {
    (*state).0.digest()
}

/// Frees a streaming state (null is ignored).
///
/// # Safety
/// `state` is null or from `hb_xxh3_new`, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn hb_xxh3_free(state: *mut hb_xxh3_t) {
    if !state.is_null() {
        drop(Box::from_raw(state));
    }
}

/// Resource limits of one store, shared with the C++ side (`native/wasm_limits.h`), which owns
/// the struct and keeps it alive at a fixed address for as long as the store exists. Wasmtime's C
/// API only offers fixed `StoreLimits`, which cannot say whether a growth was refused; hb-runtimes
/// needs that to tell a guest that failed at its memory cap (a `LimitError`) from any other trap.
#[repr(C)]
pub struct hb_limits_t {
    /// Cap on each linear memory, in bytes; 0: the memory's declared maximum, or
    /// `default_memory_bytes` when it declares none.
    pub max_memory_bytes: u64,
    pub default_memory_bytes: u64,
    /// Cap on each table, in elements (a declared maximum applies as well).
    pub max_table_elements: u64,
    /// Growths refused (memories and tables, at instantiation or by `grow`) since the host last
    /// reset it, and about the last one: the cap (0 when it was the module's own maximum or the
    /// allocator), what was asked (bytes or elements) and whether it was a table.
    pub refused: u64,
    pub refused_cap: u64,
    pub refused_desired: u64,
    pub refused_table: u8,
}

impl hb_limits_t {
    fn refuse(&mut self, cap: u64, desired: u64, table: bool) {
        self.refused += 1;
        self.refused_cap = cap;
        self.refused_desired = desired;
        self.refused_table = table as u8;
    }
}

impl wasmtime::ResourceLimiter for hb_limits_t {
    fn memory_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        // An undeclared maximum reaches here as the index type's limit (2^32 for 32-bit memories,
        // 2^64 minus a page for 64-bit ones) or as None when it overflows.
        let cap = match (self.max_memory_bytes, maximum) {
            (0, Some(max)) if (max as u64) < (1u64 << 63) && max as u64 != 1u64 << 32 => max as u64,
            (0, _) => self.default_memory_bytes,
            (cap, _) => cap,
        };
        let allowed = desired as u64 <= cap;
        if !allowed {
            self.refuse(cap, desired as u64, false);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.refuse(0, 0, false);
        Ok(())
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired as u64 <= self.max_table_elements;
        if !allowed {
            self.refuse(self.max_table_elements, desired as u64, true);
        }
        Ok(allowed)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.refuse(0, 0, true);
        Ok(())
    }
}

struct LimitsPtr(*mut hb_limits_t);
// The store, and with it this pointer, is only ever used on the thread that owns the instance.
unsafe impl Send for LimitsPtr {}
unsafe impl Sync for LimitsPtr {}

/// Makes `limits` the resource limiter of `store` (replacing any `wasmtime_store_limiter`).
///
/// # Safety
/// `store` is a live store from `wasmtime_store_new`; `limits` stays valid, at the same address,
/// until the store is deleted, and is not accessed by the caller while wasm code of the store runs.
#[no_mangle]
pub unsafe extern "C" fn hb_store_limiter(store: *mut wasmtime_store_t, limits: *mut hb_limits_t) {
    // `wasmtime_store_t` is `#[repr(C)] struct { store: Store<WasmtimeStoreData> }` in the pinned
    // wasmtime-c-api-impl (48.0.8): its only field sits at offset 0, and the field is crate-private,
    // hence the cast.
    let store = &mut *(store as *mut wasmtime::Store<WasmtimeStoreData>);
    let ptr = LimitsPtr(limits);
    store.limiter(move |_| {
        let ptr = &ptr;
        &mut *ptr.0
    });
}
