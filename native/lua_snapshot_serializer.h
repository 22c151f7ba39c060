// Lua snapshots, writing: the Serializer. It numbers the objects reachable from the registry and
// the per-type metatables in a deterministic breadth-first walk (Walk, lua_snapshot_walk.cc: no
// Lua call, no allocation in the state, SnapshotError naming the path of the first value v2 cannot
// capture), then writes each object's shell and content (Write, lua_snapshot_write.cc).
// Its scratch (ids, the output) comes from an LAlloc over the host's memory.
#pragma once

#include <napi.h>

#include <string>
#include <utility>
#include <vector>

#include "lua_snapshot_format.h"
#include "lua_vm.h"  // kAuxLoad, LuaHostTrampoline

namespace hbr {
namespace luasnap {

// How an object was reached from its parent (for the path in error messages).

enum Edge : uint8_t {
  kEdgeRoot,
  kEdgeValue,  // table value under `key`
  kEdgeKey,
  kEdgeArray,  // array part, `index`
  kEdgeMeta,
  kEdgeUserValue,
  kEdgeUpvalue,  // `index`
  kEdgeProto,
  kEdgeStack,  // `index`
  kEdgeThread,
  kEdgeConst,
};

struct Obj {
  const void* p;
  const TValue* key;
  int64_t index;
  uint32_t parent;
  uint8_t kind;
  uint8_t edge;
};

// Slots of the VM's aux table that snapshots write as `false` (lua_vm.h).
inline bool IsTransientAux(int64_t slot) { return slot != kAuxLoad; }

// Object pointer -> id, open addressing (the serializer's hot path: one lookup per reference).
class IdMap {
 public:
  explicit IdMap(LAlloc<uint8_t> a) : slots_(LAlloc<Slot>(a)) { slots_.resize(1024); }
  // The id of `p`, or kNone after inserting it with `id`.
  uint32_t FindOrInsert(const void* p, uint32_t id) {
    if ((count_ + 1) * 2 > slots_.size()) Grow();
    size_t mask = slots_.size() - 1;
    for (size_t i = Hash(p) & mask;; i = (i + 1) & mask) {
      if (slots_[i].p == p) return slots_[i].id;
      if (slots_[i].p == nullptr) {
        slots_[i] = {p, id};
        count_++;
        return 0xffffffffu;
      }
    }
  }
  uint32_t Find(const void* p) const {
    size_t mask = slots_.size() - 1;
    for (size_t i = Hash(p) & mask;; i = (i + 1) & mask) {
      if (slots_[i].p == p) return slots_[i].id;
      if (slots_[i].p == nullptr) return 0xffffffffu;
    }
  }

 private:
  struct Slot {
    const void* p = nullptr;
    uint32_t id = 0;
  };
  static size_t Hash(const void* p) {
    uint64_t x = reinterpret_cast<uintptr_t>(p);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return static_cast<size_t>(x);
  }
  void Grow() {
    std::vector<Slot, LAlloc<Slot>> old(slots_.get_allocator());
    old.swap(slots_);
    slots_.resize(old.size() * 2);
    count_ = 0;
    for (const Slot& s : old) {
      if (s.p != nullptr) FindOrInsert(s.p, s.id);
    }
  }
  std::vector<Slot, LAlloc<Slot>> slots_;
  size_t count_ = 0;
};

class Serializer {
 public:
  Serializer(Napi::Env env, lua_State* L, const Table* aux, const std::vector<std::string>& host_paths,
             LAlloc<uint8_t> a)
      : env_(env),
        L_(L),
        aux_(aux),
        host_paths_(host_paths),
        names_(Names()),
        gmatch_aux_(NamedPointer(names_, "string.gmatch#iter")),
        objs_(a),
        ids_(a),
        open_(0, std::hash<const void*>(), std::equal_to<const void*>(), a),
        names_used_(a),
        name_local_(0, std::hash<uint32_t>(), std::equal_to<uint32_t>(), a),
        hosts_used_(a),
        host_local_(0, std::hash<int64_t>(), std::equal_to<int64_t>(), a),
        out_(a) {}

  // Numbers every reachable object (objs_), checking each can be written.
  void Walk();
  // Objects: shells, contents, roots.
  void Write();

  const Bytes& out() const { return out_; }
  const std::vector<uint32_t, LAlloc<uint32_t>>& names_used() const { return names_used_; }
  const std::vector<int64_t, LAlloc<int64_t>>& hosts_used() const { return hosts_used_; }

 private:
  uint32_t Ref(const void* p, uint8_t kind, uint32_t parent, uint8_t edge, const TValue* key, int64_t index) {
    uint32_t id = static_cast<uint32_t>(objs_.size());
    uint32_t found = ids_.FindOrInsert(p, id);
    if (found != kNone) return found;
    objs_.push_back({p, key, index, parent, kind, edge});
    return id;
  }

  uint32_t IdOf(const void* p) const {
    return ids_.Find(p);
  }

  // Index of a named pointer in this snapshot's name table (added on first use), or kNone.
  uint32_t NameOf(const void* p, uint8_t kind) {
    auto it = names_.by_ptr.find(p);
    if (it == names_.by_ptr.end() || names_.list[it->second].kind != kind) return kNone;
    auto local = name_local_.find(it->second);
    if (local != name_local_.end()) return local->second;
    uint32_t idx = static_cast<uint32_t>(names_used_.size());
    names_used_.push_back(it->second);
    name_local_.emplace(it->second, idx);
    return idx;
  }

  // Defined in lua_snapshot_walk.cc and used only there. `inline` (legal: every file that calls
  // them sees their definition) keeps them candidates for inlining into the walk's loop, as they
  // were when the serializer was one file with internal linkage.
  inline uint32_t NameOrFail(const void* p, uint8_t kind, const char* what, uint32_t parent, uint8_t edge,
                             const TValue* key, int64_t index);
  inline void Visit(const TValue* v, uint32_t parent, uint8_t edge, const TValue* key, int64_t index);
  inline void VisitUpval(const UpVal* uv, uint32_t parent, int64_t index);
  inline void Children(uint32_t id);
  uint8_t StreamKind(const Udata* u, const Obj& o);  // also used by Shell
  [[noreturn]] void Fail(const std::string& why, uint32_t parent, uint8_t edge, const TValue* key, int64_t index);
  static std::string Label(uint8_t edge, const TValue* key, int64_t index);

  // Defined in lua_snapshot_write.cc and used only there (`inline` as above).
  void WriteValue(const TValue* v);
  // The key of a node whose value is nil (written exactly, or as a dead key).
  inline void WriteStaleKey(const TValue* k);

  inline void PutRef(const void* p);
  inline void Shell(const Obj& o);
  inline void Content(const Obj& o);

  Napi::Env env_;
  lua_State* L_;
  const Table* aux_;
  const std::vector<std::string>& host_paths_;
  const CNames& names_;
  const void* gmatch_aux_;
  std::vector<Obj, LAlloc<Obj>> objs_;
  IdMap ids_;
  LMap<const void*, std::pair<lua_State*, uint32_t>> open_;
  std::vector<uint32_t, LAlloc<uint32_t>> names_used_;
  LMap<uint32_t, uint32_t> name_local_;
  std::vector<int64_t, LAlloc<int64_t>> hosts_used_;
  LMap<int64_t, uint32_t> host_local_;
  Bytes out_;
};

}  // namespace luasnap
}  // namespace hbr
