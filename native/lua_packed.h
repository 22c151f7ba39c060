// Packed-buffer marshalling: tables (and the values around them) cross between JS and Lua as one
// tagged byte stream instead of one N-API call per property. The JS side (src/lua-packed.ts)
// encodes arguments and decodes results; this side decodes arguments straight into Lua values
// and encodes results. Wire format: docs/lua-vm.md, "Marshalling". The mapping of values is the
// one of lua_marshal.h (docs/lua-vm.md, "Values"); errors have the same classes and messages.
//
// Safety: decoding allocates in Lua, so `PushPacked` is C-style code (no object with a
// destructor, malformed input raises a Lua error) and runs only inside a protected call.
// Encoding reads Lua values with non-raising calls only (as `LuaToJs`) and may throw Napi errors.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <vector>

struct lua_State;

namespace hbr {

// Tags of the stream (one byte, then the payload; integers little-endian).
enum PackedTag : uint8_t {
  kPkNil = 0,
  kPkFalse = 1,
  kPkTrue = 2,
  kPkInt32 = 3,     // i32
  kPkInt64 = 4,     // i64. Lua -> JS: only beyond 2^53-1 (a bigint)
  kPkFloat = 5,     // f64. Lua -> JS: also integers in (2^31, 2^53-1]
  kPkIntF64 = 6,    // JS -> Lua: f64 holding a safe integer, pushed as a Lua integer
  kPkStr = 7,       // u32 length, bytes. JS -> Lua: UTF-8; Lua -> JS: ASCII only
  kPkUtf8 = 8,      // Lua -> JS: u32 length, well-formed UTF-8 with non-ASCII bytes
  kPkBytes = 9,     // u32 length, bytes. JS -> Lua: a Uint8Array; Lua -> JS: not UTF-8 (a Buffer)
  kPkArray = 10,    // u32 n, then n values (Lua sequence 1..n)
  kPkObject = 11,   // u32 n, then n pairs. JS -> Lua: (key, value); Lua -> JS: (value, key)
  kPkFunction = 12, // Lua -> JS only: "[lua function]"
  kPkThread = 13,   // Lua -> JS only: "[lua thread]"
  kPkUserdata = 14, // Lua -> JS only: "[lua userdata]"
};

// Input of PushPacked: a cursor over bytes that stay valid and unmodified while it runs.
struct PackedReader {
  const uint8_t* p;
  const uint8_t* end;
};

// Pushes the next value of the stream and advances the cursor. Stack: [] -> [value].
// Raises (a Lua error) on memory errors and malformed streams: call inside a protected call.
void PushPacked(lua_State* L, PackedReader* r);

// True if one of the `n` values from `idx` up is a table (so the packed form pays off).
bool AnyTable(lua_State* L, int idx, int n);

// Writes u32 n, then the `n` values from stack index `idx` up, converted as by LuaToJs (same
// errors: AoError 500 ERR_LUA_CONVERT), from offset 0 of `out` (grown as needed; its size is
// capacity, not length). Returns the byte length. Non-raising reads only. Stack: unchanged.
size_t PackLuaValues(napi_env env, lua_State* L, int idx, int n, std::vector<uint8_t>& out);

// The arguments of callPacked(fn, buf, len, nargs): a cursor over buf[0, len) (a Uint8Array that
// must stay unmodified until the arguments are pushed) and the value count. AoError 400 if bad.
PackedReader ReadPackedArgs(napi_env env, napi_value buf, napi_value len, napi_value nargs, uint32_t* n);

// A cursor over the packed value a JS host entry returned (a Uint8Array, read before any JS runs
// again). Throws AoError 400 if it is not one.
PackedReader ReadPackedValue(napi_env env, napi_value v);

// The `n` results from `idx` up, packed (PackLuaValues): written into the Uint8Array `into` when
// given and large enough (returns the byte count, a number), else a new Buffer of exactly them.
napi_value PackedResults(napi_env env, lua_State* L, int idx, int n, napi_value into);

}  // namespace hbr
