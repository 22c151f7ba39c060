#include "lua_marshal.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "errors.h"

extern "C" {
#include "lauxlib.h"
#include "lua.h"
}

namespace hbr {

namespace {

constexpr double kMaxSafeDouble = 9007199254740991.0;  // Number.MAX_SAFE_INTEGER
constexpr int64_t kMaxSafeInt = 9007199254740991LL;

inline void Ok(napi_env env, napi_status s) {
  if (s != napi_ok) throw Napi::Error::New(env);
}

// 0: not UTF-8; 1: ASCII; 2: UTF-8 with multi-byte sequences.
int Utf8Class(const char* s, size_t len) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(s);
  const unsigned char* e = p + len;
  bool ascii = true;
  while (p < e) {
    if (e - p >= 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      if ((w & 0x8080808080808080ULL) == 0) {
        p += 8;
        continue;
      }
    }
    unsigned c = *p;
    if (c < 0x80) {
      p++;
      continue;
    }
    ascii = false;
    if (c < 0xC2) return 0;
    if (c < 0xE0) {
      if (e - p < 2 || (p[1] & 0xC0) != 0x80) return 0;
      p += 2;
    } else if (c < 0xF0) {
      if (e - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
      if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F)) return 0;  // overlong, surrogate
      p += 3;
    } else if (c < 0xF5) {
      if (e - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
      if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F)) return 0;  // overlong, > U+10FFFF
      p += 4;
    } else {
      return 0;
    }
  }
  return ascii ? 1 : 2;
}

}  // namespace

void ThrowLuaConvertError(napi_env env, const std::string& why) {
  throw MakeError(Napi::Env(env), "AoError", "cannot convert a Lua value to JS: " + why,
                  {{"status", Napi::Number::New(env, 500)}, {"code", Napi::String::New(env, "ERR_LUA_CONVERT")}});
}

void EnterLuaTable(napi_env env, lua_State* L, int idx, int depth, std::vector<const void*>& ancestors) {
  if (depth >= kMaxValueDepth) {
    ThrowLuaConvertError(env, "table nested deeper than " + std::to_string(kMaxValueDepth) + " levels");
  }
  const void* self = lua_topointer(L, idx);
  for (const void* p : ancestors) {
    if (p == self) ThrowLuaConvertError(env, "cycle detected (the table contains itself)");
  }
  if (!lua_checkstack(L, 4)) ThrowLuaConvertError(env, "Lua stack exhausted");
  ancestors.push_back(self);
}

bool IsUtf8(const char* s, size_t len) { return Utf8Class(s, len) != 0; }

int Utf8Kind(const char* s, size_t len) { return Utf8Class(s, len); }

napi_value BytesToJs(napi_env env, const char* s, size_t len) {
  napi_value out;
  switch (Utf8Class(s, len)) {
    case 1:
      Ok(env, napi_create_string_latin1(env, s, len, &out));
      break;
    case 2:
      Ok(env, napi_create_string_utf8(env, s, len, &out));
      break;
    default: {
      void* data;
      Ok(env, napi_create_buffer_copy(env, len, s, &data, &out));
    }
  }
  return out;
}

// ---- Phase 1: JS -> arena ------------------------------------------------------------------------

void ArenaBuilder::Add(napi_value v, const char* label, uint32_t index) {
  label_ = label;
  label_index_ = index;
  napi_valuetype t;
  Ok(env_, napi_typeof(env_, v, &t));
  AddValue(v, t, 0);
}

void ArenaBuilder::AddTyped(napi_value v, napi_valuetype t, const char* label, uint32_t index) {
  label_ = label;
  label_index_ = index;
  AddValue(v, t, 0);
}

void ArenaBuilder::AddValue(napi_value v, int depth) {
  napi_valuetype t;
  Ok(env_, napi_typeof(env_, v, &t));
  AddValue(v, t, depth);
}

void ArenaBuilder::AddString(const char* s, size_t len) {
  LuaNode n{};
  n.kind = LuaNode::kString;
  n.len = len;
  n.v.off = a_.bytes.size();
  a_.bytes.insert(a_.bytes.end(), s, s + len);
  a_.nodes.push_back(n);
  a_.needs_protection = true;
}

std::string ArenaBuilder::Path() const {
  std::string p = label_;
  if (*label_ != '\0') p += "[" + std::to_string(label_index_) + "]";
  for (const Seg& s : path_) {
    if (s.key == nullptr) {
      p += "[" + std::to_string(s.index) + "]";
    } else {
      size_t len = 0;
      char buf[128];
      if (napi_get_value_string_utf8(env_, s.key, buf, sizeof buf, &len) != napi_ok) len = 0;
      p += ".";
      p.append(buf, len);
    }
  }
  return p;
}

void ArenaBuilder::Fail(const std::string& why) {
  std::string where = Path();
  throw InvalidArg(Napi::Env(env_), std::string(what_) + ": " + why + (where.empty() ? "" : " (at " + where + ")"));
}

void ArenaBuilder::AddValue(napi_value v, napi_valuetype t, int depth) {
  LuaNode n{};
  switch (t) {
    case napi_undefined:
    case napi_null:
      n.kind = LuaNode::kNil;
      a_.nodes.push_back(n);
      return;
    case napi_boolean: {
      bool b;
      Ok(env_, napi_get_value_bool(env_, v, &b));
      n.kind = b ? LuaNode::kTrue : LuaNode::kFalse;
      a_.nodes.push_back(n);
      return;
    }
    case napi_number: {
      double d;
      Ok(env_, napi_get_value_double(env_, v, &d));
      // Integers become Lua integers, except -0 which keeps its sign as a float.
      if (d == std::trunc(d) && std::fabs(d) <= kMaxSafeDouble && !(d == 0 && std::signbit(d))) {
        n.kind = LuaNode::kInt;
        n.v.i = static_cast<int64_t>(d);
      } else {
        n.kind = LuaNode::kFloat;
        n.v.f = d;
      }
      a_.nodes.push_back(n);
      return;
    }
    case napi_bigint: {
      bool lossless = false;
      int64_t i;
      Ok(env_, napi_get_value_bigint_int64(env_, v, &i, &lossless));
      if (!lossless) Fail("BigInt outside the int64 range");
      n.kind = LuaNode::kInt;
      n.v.i = i;
      a_.nodes.push_back(n);
      return;
    }
    case napi_string: {
      size_t len;
      Ok(env_, napi_get_value_string_utf8(env_, v, nullptr, 0, &len));
      size_t off = a_.bytes.size();
      a_.bytes.resize(off + len + 1);
      Ok(env_, napi_get_value_string_utf8(env_, v, a_.bytes.data() + off, len + 1, &len));
      a_.bytes.resize(off + len);
      n.kind = LuaNode::kString;
      n.len = len;
      n.v.off = off;
      a_.nodes.push_back(n);
      a_.needs_protection = true;
      return;
    }
    case napi_object:
      break;
    case napi_function:
      Fail("a function has no Lua form (register host functions with setGlobalFunction)");
    default:
      Fail("a symbol or external value has no Lua form");
  }

  bool flag = false;
  Ok(env_, napi_is_typedarray(env_, v, &flag));
  if (flag) {
    napi_typedarray_type type;
    size_t length;
    void* data;
    Ok(env_, napi_get_typedarray_info(env_, v, &type, &length, &data, nullptr, nullptr));
    if (type != napi_uint8_array && type != napi_uint8_clamped_array) {
      Fail("only Uint8Array (or Buffer) converts to a Lua string");
    }
    // Copied, not referenced: a later getter among the arguments could detach the buffer.
    AddString(length == 0 ? "" : static_cast<const char*>(data), length);
    return;
  }
  if (depth >= kMaxValueDepth) Fail("value nested deeper than " + std::to_string(kMaxValueDepth) + " levels");
  for (napi_value anc : ancestors_) {
    bool same = false;
    Ok(env_, napi_strict_equals(env_, anc, v, &same));
    if (same) Fail("cycle detected (the value contains itself)");
  }
  a_.needs_protection = true;

  Ok(env_, napi_is_array(env_, v, &flag));
  if (flag) {
    uint32_t len;
    Ok(env_, napi_get_array_length(env_, v, &len));
    n.kind = LuaNode::kArray;
    n.count = len;
    a_.nodes.push_back(n);
    ancestors_.push_back(v);
    for (uint32_t i = 0; i < len; i++) {
      napi_value e;
      Ok(env_, napi_get_element(env_, v, i, &e));
      path_.push_back({nullptr, i});
      AddValue(e, depth + 1);
      path_.pop_back();
    }
    ancestors_.pop_back();
    return;
  }

  // Plain objects only: the prototype is null or Object.prototype (of any realm).
  napi_value proto;
  Ok(env_, napi_get_prototype(env_, v, &proto));
  napi_valuetype pt;
  Ok(env_, napi_typeof(env_, proto, &pt));
  if (pt != napi_null) {
    napi_value pp;
    Ok(env_, napi_get_prototype(env_, proto, &pp));
    Ok(env_, napi_typeof(env_, pp, &pt));
    if (pt != napi_null) {
      Fail("only plain objects and arrays convert to Lua tables (got a class instance, Map, Date, ...)");
    }
  }
  napi_value keys;
  Ok(env_, napi_get_all_property_names(env_, v, napi_key_own_only,
                                       static_cast<napi_key_filter>(napi_key_enumerable | napi_key_skip_symbols),
                                       napi_key_numbers_to_strings, &keys));
  uint32_t nkeys;
  Ok(env_, napi_get_array_length(env_, keys, &nkeys));
  size_t at = a_.nodes.size();
  n.kind = LuaNode::kObject;
  a_.nodes.push_back(n);
  ancestors_.push_back(v);
  uint32_t pairs = 0;
  for (uint32_t i = 0; i < nkeys; i++) {
    napi_value key, val;
    Ok(env_, napi_get_element(env_, keys, i, &key));
    Ok(env_, napi_get_property(env_, v, key, &val));
    napi_valuetype vt;
    Ok(env_, napi_typeof(env_, val, &vt));
    if (vt == napi_undefined || vt == napi_null) continue;  // a nil value is an absent key
    path_.push_back({key, 0});
    AddValue(key, depth + 1);
    AddValue(val, depth + 1);
    path_.pop_back();
    pairs++;
  }
  ancestors_.pop_back();
  a_.nodes[at].count = pairs;
}

// ---- Phase 2: arena -> Lua (C-style: no object with a destructor lives here) ----------------------

void PushScalar(lua_State* L, const LuaNode& n) {
  switch (n.kind) {
    case LuaNode::kFalse:
      lua_pushboolean(L, 0);
      break;
    case LuaNode::kTrue:
      lua_pushboolean(L, 1);
      break;
    case LuaNode::kInt:
      lua_pushinteger(L, static_cast<lua_Integer>(n.v.i));
      break;
    case LuaNode::kFloat:
      lua_pushnumber(L, n.v.f);
      break;
    default:
      lua_pushnil(L);
  }
}

void PushNode(lua_State* L, const LuaArena& a, size_t* pos) {
  const LuaNode& n = a.nodes[(*pos)++];
  switch (n.kind) {
    case LuaNode::kString:
      lua_pushlstring(L, a.StringData(n), n.len);
      return;
    case LuaNode::kArray: {
      luaL_checkstack(L, 3, "value nested too deeply");
      lua_createtable(L, n.count > 0x7fffffff ? 0x7fffffff : static_cast<int>(n.count), 0);
      for (uint32_t i = 0; i < n.count; i++) {
        PushNode(L, a, pos);
        lua_rawseti(L, -2, static_cast<lua_Integer>(i) + 1);
      }
      return;
    }
    case LuaNode::kObject: {
      luaL_checkstack(L, 3, "value nested too deeply");
      lua_createtable(L, 0, n.count > 0x7fffffff ? 0x7fffffff : static_cast<int>(n.count));
      for (uint32_t i = 0; i < n.count; i++) {
        PushNode(L, a, pos);
        PushNode(L, a, pos);
        lua_rawset(L, -3);
      }
      return;
    }
    default:
      PushScalar(L, n);
  }
}

// ---- Phase 3: Lua -> JS (non-raising reads only) --------------------------------------------------

namespace {

class ToJs {
 public:
  ToJs(napi_env env, lua_State* L) : env_(env), L_(L) {}

  // Stack: unchanged.
  napi_value Convert(int idx, int depth) { return Convert(idx, lua_type(L_, idx), depth); }

  // Convert, for a value whose Lua type the caller already has.
  napi_value Convert(int idx, int type, int depth) {
    napi_value out;
    switch (type) {
      case LUA_TBOOLEAN:
        Ok(env_, napi_get_boolean(env_, lua_toboolean(L_, idx) != 0, &out));
        return out;
      case LUA_TNUMBER:
        if (lua_isinteger(L_, idx)) {
          int64_t i = lua_tointeger(L_, idx);
          if (i >= -kMaxSafeInt && i <= kMaxSafeInt) {
            Ok(env_, napi_create_int64(env_, i, &out));
          } else {
            Ok(env_, napi_create_bigint_int64(env_, i, &out));
          }
        } else {
          Ok(env_, napi_create_double(env_, lua_tonumber(L_, idx), &out));
        }
        return out;
      case LUA_TSTRING: {
        size_t len;
        const char* s = lua_tolstring(L_, idx, &len);
        return BytesToJs(env_, s, len);
      }
      case LUA_TTABLE:
        return Table(lua_absindex(L_, idx), depth);
      case LUA_TFUNCTION:
        return Literal("[lua function]", &out);
      case LUA_TTHREAD:
        return Literal("[lua thread]", &out);
      case LUA_TUSERDATA:
      case LUA_TLIGHTUSERDATA:
        return Literal("[lua userdata]", &out);
      default:
        Ok(env_, napi_get_null(env_, &out));
        return out;
    }
  }

 private:
  napi_value Literal(const char* s, napi_value* out) {
    Ok(env_, napi_create_string_latin1(env_, s, NAPI_AUTO_LENGTH, out));
    return *out;
  }

  [[noreturn]] void Fail(const std::string& why) { ThrowLuaConvertError(env_, why); }

  // Stack: unchanged. `idx` is absolute.
  napi_value Table(int idx, int depth) {
    EnterLuaTable(env_, L_, idx, depth, ancestors_);

    // Keys exactly 1..n (n >= 1) make an array: n distinct integer keys, none outside [1, n].
    size_t count = 0;
    lua_Integer maxk = 0;
    bool seq = true;
    lua_pushnil(L_);
    while (lua_next(L_, idx) != 0) {
      count++;
      if (seq) {
        if (lua_type(L_, -2) == LUA_TNUMBER && lua_isinteger(L_, -2)) {
          lua_Integer k = lua_tointeger(L_, -2);
          if (k < 1) seq = false;
          if (k > maxk) maxk = k;
        } else {
          seq = false;
        }
      }
      lua_pop(L_, 1);
    }
    napi_value out;
    if (seq && count > 0 && count < 0xffffffffu && static_cast<size_t>(maxk) == count) {
      Ok(env_, napi_create_array_with_length(env_, count, &out));
      for (size_t i = 1; i <= count; i++) {
        lua_rawgeti(L_, idx, static_cast<lua_Integer>(i));
        napi_value v = Convert(lua_gettop(L_), depth + 1);
        lua_pop(L_, 1);
        Ok(env_, napi_set_element(env_, out, static_cast<uint32_t>(i - 1), v));
      }
      ancestors_.pop_back();
      return out;
    }
    Ok(env_, napi_create_object(env_, &out));
    lua_pushnil(L_);
    while (lua_next(L_, idx) != 0) {
      int top = lua_gettop(L_);
      napi_value v = Convert(top, depth + 1);
      SetKey(out, top - 1, v);
      lua_pop(L_, 1);
    }
    ancestors_.pop_back();
    return out;
  }

  // Sets obj[<JS form of the Lua key at kidx>] = v. The key is only read, never converted in place.
  void SetKey(napi_value obj, int kidx, napi_value v) {
    napi_value key;
    switch (lua_type(L_, kidx)) {
      case LUA_TSTRING: {
        size_t len;
        const char* s = lua_tolstring(L_, kidx, &len);
        int cls = Utf8Class(s, len);
        if (cls == 0) Fail("a table key is not valid UTF-8");
        Ok(env_, cls == 1 ? napi_create_string_latin1(env_, s, len, &key)
                          : napi_create_string_utf8(env_, s, len, &key));
        if (len == 9 && std::memcmp(s, "__proto__", 9) == 0) {
          // An own data property: a plain assignment would set the prototype instead.
          auto attrs = static_cast<napi_property_attributes>(napi_writable | napi_enumerable | napi_configurable);
          napi_property_descriptor d = {nullptr, key, nullptr, nullptr, nullptr, v, attrs, nullptr};
          Ok(env_, napi_define_properties(env_, obj, 1, &d));
          return;
        }
        break;
      }
      case LUA_TNUMBER:
        if (lua_isinteger(L_, kidx)) {
          lua_Integer k = lua_tointeger(L_, kidx);
          if (k >= 0 && k < 0xffffffffLL) {
            Ok(env_, napi_set_element(env_, obj, static_cast<uint32_t>(k), v));
            return;
          }
          char buf[32];
          int n = std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(k));
          Ok(env_, napi_create_string_latin1(env_, buf, static_cast<size_t>(n), &key));
        } else {
          napi_value num;
          Ok(env_, napi_create_double(env_, lua_tonumber(L_, kidx), &num));
          Ok(env_, napi_coerce_to_string(env_, num, &key));
        }
        break;
      case LUA_TBOOLEAN:
        Ok(env_, napi_create_string_latin1(env_, lua_toboolean(L_, kidx) ? "true" : "false", NAPI_AUTO_LENGTH, &key));
        break;
      default:
        Fail(std::string("a table key of type ") + lua_typename(L_, lua_type(L_, kidx)) + " has no JS form");
    }
    Ok(env_, napi_set_property(env_, obj, key, v));
  }

  napi_env env_;
  lua_State* L_;
  std::vector<const void*> ancestors_;
};

}  // namespace

napi_value LuaToJs(napi_env env, lua_State* L, int idx) { return ToJs(env, L).Convert(idx, 0); }

napi_value LuaToJs(napi_env env, lua_State* L, int idx, int type) { return ToJs(env, L).Convert(idx, type, 0); }

}  // namespace hbr
