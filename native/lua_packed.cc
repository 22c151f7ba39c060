#include "lua_packed.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "errors.h"
#include "lua_marshal.h"

extern "C" {
#include "lauxlib.h"
#include "lua.h"
}

namespace hbr {

namespace {

constexpr int64_t kMaxSafeInt = 9007199254740991LL;

// ---- JS -> Lua (C-style: runs inside a protected call, raises on bad input) ----------------------

[[noreturn]] void Malformed(lua_State* L) {
  luaL_error(L, "malformed packed value");
  for (;;) {
  }  // luaL_error does not return
}

inline const uint8_t* Take(lua_State* L, PackedReader* r, size_t n) {
  if (static_cast<size_t>(r->end - r->p) < n) Malformed(L);
  const uint8_t* at = r->p;
  r->p += n;
  return at;
}

inline uint32_t U32(lua_State* L, PackedReader* r) {
  uint32_t v;
  std::memcpy(&v, Take(L, r, 4), 4);
  return v;
}

void Push(lua_State* L, PackedReader* r, int depth) {
  uint8_t tag = *Take(L, r, 1);
  switch (tag) {
    case kPkNil:
      lua_pushnil(L);
      return;
    case kPkFalse:
    case kPkTrue:
      lua_pushboolean(L, tag == kPkTrue);
      return;
    case kPkInt32: {
      int32_t v;
      std::memcpy(&v, Take(L, r, 4), 4);
      lua_pushinteger(L, v);
      return;
    }
    case kPkInt64: {
      int64_t v;
      std::memcpy(&v, Take(L, r, 8), 8);
      lua_pushinteger(L, static_cast<lua_Integer>(v));
      return;
    }
    case kPkFloat:
    case kPkIntF64: {
      double d;
      std::memcpy(&d, Take(L, r, 8), 8);
      if (tag == kPkFloat) {
        lua_pushnumber(L, d);
        return;
      }
      if (!(d >= -9007199254740991.0 && d <= 9007199254740991.0)) Malformed(L);
      lua_pushinteger(L, static_cast<lua_Integer>(d));
      return;
    }
    case kPkStr:
    case kPkBytes: {
      uint32_t len = U32(L, r);
      const uint8_t* s = Take(L, r, len);
      lua_pushlstring(L, reinterpret_cast<const char*>(s), len);
      return;
    }
    case kPkArray:
    case kPkObject: {
      if (depth > kMaxValueDepth) Malformed(L);
      uint32_t n = U32(L, r);
      // Every entry takes at least one byte (two for a pair): a count beyond that is malformed,
      // and bounding it also bounds the preallocation.
      size_t left = static_cast<size_t>(r->end - r->p);
      if (tag == kPkArray ? n > left : n > left / 2) Malformed(L);
      luaL_checkstack(L, 3, "value nested too deeply");
      if (tag == kPkArray) {
        lua_createtable(L, static_cast<int>(n), 0);
        for (uint32_t i = 0; i < n; i++) {
          Push(L, r, depth + 1);
          lua_rawseti(L, -2, static_cast<lua_Integer>(i) + 1);
        }
      } else {
        lua_createtable(L, 0, static_cast<int>(n));
        for (uint32_t i = 0; i < n; i++) {
          Push(L, r, depth + 1);
          if (lua_type(L, -1) != LUA_TSTRING) Malformed(L);
          Push(L, r, depth + 1);
          if (lua_type(L, -1) == LUA_TNIL) Malformed(L);
          lua_rawset(L, -3);
        }
      }
      return;
    }
    default:
      Malformed(L);
  }
}

// ---- Lua -> JS (non-raising reads; mirrors ToJs in lua_marshal.cc) --------------------------------

class Packer {
 public:
  // Writes from offset 0 of `out`, which is used as raw capacity (its size is not the length).
  Packer(napi_env env, lua_State* L, std::vector<uint8_t>& out) : env_(env), L_(L), out_(out) {}

  size_t length() const { return len_; }

  void U32(uint32_t v) { Raw(&v, 4); }

  // Stack: unchanged.
  void Value(int idx, int depth) {
    switch (lua_type(L_, idx)) {
      case LUA_TBOOLEAN:
        Tag(lua_toboolean(L_, idx) ? kPkTrue : kPkFalse);
        return;
      case LUA_TNUMBER:
        if (lua_isinteger(L_, idx)) {
          Integer(lua_tointeger(L_, idx));
        } else {
          Float(lua_tonumber(L_, idx));
        }
        return;
      case LUA_TSTRING: {
        size_t len;
        const char* s = lua_tolstring(L_, idx, &len);
        int cls = Utf8Kind(s, len);
        Bytes(cls == 1 ? kPkStr : cls == 2 ? kPkUtf8 : kPkBytes, s, len);
        return;
      }
      case LUA_TTABLE:
        Table(lua_absindex(L_, idx), depth);
        return;
      case LUA_TFUNCTION:
        Tag(kPkFunction);
        return;
      case LUA_TTHREAD:
        Tag(kPkThread);
        return;
      case LUA_TUSERDATA:
      case LUA_TLIGHTUSERDATA:
        Tag(kPkUserdata);
        return;
      default:
        Tag(kPkNil);
    }
  }

 private:
  uint8_t* Reserve(size_t n) {
    if (out_.size() - len_ < n) out_.resize(std::max(out_.size() * 2, len_ + n + 256));
    return out_.data() + len_;
  }

  void Tag(uint8_t t) {
    *Reserve(1) = t;
    len_ += 1;
  }

  void Raw(const void* p, size_t n) {
    std::memcpy(Reserve(n), p, n);
    len_ += n;
  }

  void TagWith(uint8_t tag, const void* p, size_t n) {
    uint8_t* w = Reserve(n + 1);
    w[0] = tag;
    std::memcpy(w + 1, p, n);
    len_ += n + 1;
  }

  void Float(double d) { TagWith(kPkFloat, &d, 8); }

  void Integer(lua_Integer i) {
    if (i >= INT32_MIN && i <= INT32_MAX) {
      int32_t v = static_cast<int32_t>(i);
      TagWith(kPkInt32, &v, 4);
    } else if (i >= -kMaxSafeInt && i <= kMaxSafeInt) {
      Float(static_cast<double>(i));  // exact
    } else {
      int64_t v = i;
      TagWith(kPkInt64, &v, 8);
    }
  }

  void Bytes(uint8_t tag, const char* s, size_t len) {
    if (len > UINT32_MAX) Fail("a string longer than 4 GiB");
    uint8_t* w = Reserve(len + 5);
    w[0] = tag;
    uint32_t n = static_cast<uint32_t>(len);
    std::memcpy(w + 1, &n, 4);
    std::memcpy(w + 5, s, len);
    len_ += len + 5;
  }

  [[noreturn]] void Fail(const std::string& why) { ThrowLuaConvertError(env_, why); }

  // Stack: unchanged. `idx` is absolute.
  //
  // One traversal writes the object form: (value, key) pairs. Keys exactly 1..n (n >= 1) make an
  // array instead (n distinct integer keys, none outside [1, n]); when lua_next visited them in
  // order (the usual case: they live in the array part), the written keys are cut out in place,
  // else the values are written again in index order.
  void Table(int idx, int depth) {
    EnterLuaTable(env_, L_, idx, depth, ancestors_);

    size_t at = len_;
    Tag(kPkObject);
    U32(0);
    size_t marks = key_marks_.size();  // key offsets of this table start here
    size_t count = 0;
    lua_Integer maxk = 0;
    bool seq = true;
    bool inorder = true;
    lua_pushnil(L_);
    while (lua_next(L_, idx) != 0) {
      int top = lua_gettop(L_);
      count++;
      Value(top, depth + 1);  // the value first, as LuaToJs converts it before the key
      int kt = lua_type(L_, top - 1);
      if (kt == LUA_TNUMBER && lua_isinteger(L_, top - 1)) {
        lua_Integer k = lua_tointeger(L_, top - 1);
        if (seq) {
          if (k < 1) seq = false;
          if (k > maxk) maxk = k;
          if (k != static_cast<lua_Integer>(count) || k > INT32_MAX) inorder = false;  // keys written as kPkInt32
          if (seq && inorder) key_marks_.push_back(len_);
        }
        Integer(k);
      } else {
        seq = false;
        Key(top - 1, kt);
      }
      lua_pop(L_, 1);
    }
    if (count >= 0xffffffffu) Fail("a table with 2^32 entries or more");
    if (seq && count > 0 && static_cast<size_t>(maxk) == count) {
      if (inorder) {
        // Every key was written as kPkInt32 (5 bytes) at the recorded offsets: close the gaps.
        size_t w = key_marks_[marks];
        for (size_t i = marks; i < key_marks_.size(); i++) {
          size_t from = key_marks_[i] + 5;
          size_t to = i + 1 < key_marks_.size() ? key_marks_[i + 1] : len_;
          std::memmove(out_.data() + w, out_.data() + from, to - from);
          w += to - from;
        }
        len_ = w;
      } else {
        len_ = at + 5;
        for (size_t i = 1; i <= count; i++) {
          lua_rawgeti(L_, idx, static_cast<lua_Integer>(i));
          Value(lua_gettop(L_), depth + 1);
          lua_pop(L_, 1);
        }
      }
      out_[at] = kPkArray;
    }
    key_marks_.resize(marks);
    uint32_t n = static_cast<uint32_t>(count);
    std::memcpy(out_.data() + at + 1, &n, 4);
    ancestors_.pop_back();
  }

  // The key at `kidx`, only read (never converted in place). The JS side turns a number or
  // boolean key into its string form (`String(k)`), as LuaToJs does.
  void Key(int kidx, int type) {
    switch (type) {
      case LUA_TSTRING: {
        size_t len;
        const char* s = lua_tolstring(L_, kidx, &len);
        int cls = Utf8Kind(s, len);
        if (cls == 0) Fail("a table key is not valid UTF-8");
        Bytes(cls == 1 ? kPkStr : kPkUtf8, s, len);
        return;
      }
      case LUA_TNUMBER:
      case LUA_TBOOLEAN:
        Value(kidx, 0);
        return;
      default:
        Fail(std::string("a table key of type ") + lua_typename(L_, type) + " has no JS form");
    }
  }

  napi_env env_;
  lua_State* L_;
  std::vector<uint8_t>& out_;
  size_t len_ = 0;
  std::vector<const void*> ancestors_;
  std::vector<size_t> key_marks_;
};

}  // namespace

void PushPacked(lua_State* L, PackedReader* r) { Push(L, r, 0); }

bool AnyTable(lua_State* L, int idx, int n) {
  for (int i = 0; i < n; i++) {
    if (lua_type(L, idx + i) == LUA_TTABLE) return true;
  }
  return false;
}

PackedReader ReadPackedArgs(napi_env env, napi_value buf, napi_value len, napi_value nargs, uint32_t* n) {
  bool is_ta = false;
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (napi_is_typedarray(env, buf, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, buf, &type, &length, &data, nullptr, nullptr) != napi_ok || type != napi_uint8_array) {
    throw InvalidArg(Napi::Env(env), "LuaVM#callPacked(fn, buf, len, nargs): buf must be a Uint8Array");
  }
  double l = -1, c = -1;
  napi_get_value_double(env, len, &l);
  napi_get_value_double(env, nargs, &c);
  if (!(l >= 0 && l <= static_cast<double>(length)) || l != static_cast<double>(static_cast<size_t>(l)) ||
      !(c >= 0 && c <= l) || c != static_cast<double>(static_cast<uint32_t>(c))) {
    throw InvalidArg(Napi::Env(env), "LuaVM#callPacked(fn, buf, len, nargs): bad len or nargs");
  }
  *n = static_cast<uint32_t>(c);
  const uint8_t* p = static_cast<const uint8_t*>(data);
  return PackedReader{p, p + static_cast<size_t>(l)};
}

PackedReader ReadPackedValue(napi_env env, napi_value v) {
  bool is_ta = false;
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok || type != napi_uint8_array) {
    throw InvalidArg(Napi::Env(env), "host function result: the packed host entry must return a Uint8Array");
  }
  const uint8_t* p = static_cast<const uint8_t*>(data);
  return PackedReader{p, p + length};
}

napi_value PackedResults(napi_env env, lua_State* L, int idx, int n, napi_value into) {
  // Reused between calls (no JS runs while it is filled; nested calls have finished by then).
  thread_local std::vector<uint8_t> scratch;
  size_t size = PackLuaValues(env, L, idx, n, scratch);
  napi_value out;
  if (into != nullptr) {
    napi_typedarray_type type;
    size_t length = 0;
    void* data = nullptr;
    if (napi_get_typedarray_info(env, into, &type, &length, &data, nullptr, nullptr) == napi_ok &&
        type == napi_uint8_array && length >= size && data != nullptr) {
      std::memcpy(data, scratch.data(), size);
      if (napi_create_uint32(env, static_cast<uint32_t>(size), &out) != napi_ok) throw Napi::Error::New(env);
      return out;
    }
  }
  void* data;
  if (napi_create_buffer_copy(env, size, scratch.data(), &data, &out) != napi_ok) throw Napi::Error::New(env);
  if (scratch.size() > (1u << 20)) std::vector<uint8_t>().swap(scratch);
  return out;
}

size_t PackLuaValues(napi_env env, lua_State* L, int idx, int n, std::vector<uint8_t>& out) {
  Packer p(env, L, out);
  p.U32(static_cast<uint32_t>(n));
  for (int i = 0; i < n; i++) p.Value(idx + i, 0);
  return p.length();
}

}  // namespace hbr
