//! Links Wasmtime's C API into one static library for the hb-runtimes addon, plus the one
//! helper the C++ side takes from Rust: the XXH3-64 checksum used by snapshot blobs.
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
