// Conversions between JS values and Lua values.
//
// JS -> Lua runs in two phases so that a Lua error (an out-of-memory longjmp) never crosses a C++
// frame with destructors: phase 1 (`ArenaBuilder`, C++, may throw Napi errors) flattens the JS
// value into a pre-order tree of plain nodes; phase 2 (`PushNode`, C-style code that holds no
// object with a destructor) runs inside a protected call and pushes the tree.
// Lua -> JS (`LuaToJs`) reads the Lua stack only through calls that cannot raise (raw reads,
// lua_next over an unmodified table, lua_tolstring on strings only), so it needs no protection.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <vector>

struct lua_State;

namespace hbr {

// Nesting limit of converted values, in both directions.
constexpr int kMaxValueDepth = 200;

struct LuaNode {
  enum Kind : uint8_t { kNil, kFalse, kTrue, kInt, kFloat, kString, kArray, kObject };
  Kind kind;
  uint32_t count;  // kArray: elements that follow; kObject: key/value node pairs that follow
  size_t len;      // kString: byte length
  union {
    int64_t i;
    double f;
    size_t off;  // kString: offset into LuaArena::bytes
  } v;
};

// Flattened values, reused between calls (cleared, capacity kept).
struct LuaArena {
  std::vector<LuaNode> nodes;
  std::vector<char> bytes;
  // True when some node needs allocation in Lua (a string or a table) and so must be pushed
  // inside a protected call; scalars can be pushed directly.
  bool needs_protection = false;

  void Clear() {
    nodes.clear();
    bytes.clear();
    needs_protection = false;
  }
  const char* StringData(const LuaNode& n) const { return bytes.data() + n.v.off; }
};

// Phase 1: appends JS values to an arena. Throws AoError 400 (ERR_INVALID_ARG) for values that
// have no Lua form (functions, symbols, class instances, cycles, bigints outside int64, ...).
// May run JS (getters); the arena is self-contained (strings and bytes are copied into it).
class ArenaBuilder {
 public:
  ArenaBuilder(napi_env env, LuaArena& arena, const char* what) : env_(env), a_(arena), what_(what) {}
  // Appends one value; `label` and `index` name it in error messages ("args[1]").
  void Add(napi_value v, const char* label, uint32_t index);
  // Add, for a value whose type the caller already has.
  void AddTyped(napi_value v, napi_valuetype t, const char* label, uint32_t index);

 private:
  void AddValue(napi_value v, int depth);
  void AddValue(napi_value v, napi_valuetype t, int depth);
  void AddString(const char* s, size_t len);
  [[noreturn]] void Fail(const std::string& why);
  std::string Path() const;

  struct Seg {
    napi_value key;  // property name, or nullptr for an array index
    uint32_t index;
  };
  napi_env env_;
  LuaArena& a_;
  const char* what_;
  const char* label_ = "";
  uint32_t label_index_ = 0;
  std::vector<napi_value> ancestors_;
  std::vector<Seg> path_;
};

// Phase 2: pushes the node at `*pos` (and its subtree) and advances `*pos` past it.
// Stack: [] -> [value]. May raise (memory); call only inside a protected call.
void PushNode(lua_State* L, const LuaArena& a, size_t* pos);

// Pushes a node that is a scalar (nil, boolean, number). Never raises. Stack: [] -> [value].
void PushScalar(lua_State* L, const LuaNode& n);

// Phase 3: the JS form of the Lua value at `idx`. Never raises a Lua error; throws AoError 500
// (ERR_LUA_CONVERT) for cycles, nesting deeper than kMaxValueDepth, and table keys with no JS
// form. Stack: unchanged.
napi_value LuaToJs(napi_env env, lua_State* L, int idx);
// LuaToJs, for a value whose Lua type (`lua_type(L, idx)`) the caller already has.
napi_value LuaToJs(napi_env env, lua_State* L, int idx, int type);

// The AoError 500 (ERR_LUA_CONVERT) "cannot convert a Lua value to JS: <why>".
[[noreturn]] void ThrowLuaConvertError(napi_env env, const std::string& why);

// Checks before converting the table at `idx` (absolute) `depth` levels below the root, with the
// tables being converted around it in `ancestors`: nesting, a cycle, stack room; then pushes it
// onto `ancestors` (the caller pops it when done). Throws as ThrowLuaConvertError. Never raises.
void EnterLuaTable(napi_env env, lua_State* L, int idx, int depth, std::vector<const void*>& ancestors);

// True if [s, s+len) is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF).
bool IsUtf8(const char* s, size_t len);

// 0: not UTF-8 (as IsUtf8); 1: ASCII; 2: well-formed UTF-8 with multi-byte sequences.
int Utf8Kind(const char* s, size_t len);

// The JS form of a byte string: a string when it is UTF-8, else a Buffer with the same bytes.
napi_value BytesToJs(napi_env env, const char* s, size_t len);

}  // namespace hbr
