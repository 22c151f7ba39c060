'use strict';
// Lua 5.3 recipe (deps/lua): `cargo fetch --locked` downloads the crates.io package `lua-src`
// (pinned with its checksum in deps/lua/Cargo.lock), which carries Lua's official C sources.
// The lua-5.3.6 directory is copied into <cache>/lua/5.3.6-<key> and its path printed on stdout
// (the CMake variable HB_LUA_SRC_DIR). CMakeLists.txt and binding.gyp compile it; nothing is
// compiled here.
//
// One source change, for determinism: Lua 5.3 seeds its string hash from addresses and the time
// (lstate.c, makeseed). hb-lstate.c is lstate.c with `g->seed = HB_LUA_SEED;` instead, a fixed
// constant (overridable with -DHB_LUA_SEED), so table iteration order is the same in every process.
//
// Limits (see "Limits" in docs/lua-vm.md): hb-meter.h declares the step meter that the addon
// implements (native/lua_vm.cc), and a few library and core files are patched in place, in the
// cache copy, to charge it from the loops that run without returning to the VM (pattern matching,
// string.rep, table.concat/sort/move/insert/remove/unpack, utf8, string comparison and
// concatenation), and lgc.c runs __gc finalizers under the budget. Every patch is a string
// replacement that fails loudly when its anchor text is not found exactly as often as expected.
//
// Snapshots (format v2, native/lua_snapshot_*.cc): every table, closure, userdata
// and thread carries a serial number given at creation from a per-state counter, and table keys
// that are such objects hash by that serial instead of by their address (light C functions and
// light userdata as keys all hash to one slot), so a table's layout, and so its `pairs` order, is the same in every
// process and can be written and read back exactly (serialPatches below).
// `node scripts/fetch-lua.js --sources` prints the list of C files to compile, one per line.
const fs = require('node:fs');
const path = require('node:path');
const { ROOT, CACHE, log, sha256, run, cargoPackageDir, publishDir } = require('./deps');

const RECIPE = path.join(ROOT, 'deps', 'lua');
const LUA_VERSION = '5.3.6';
// Lua's own src/Makefile: CORE_O and LIB_O (lua.c and luac.c are the executables), with lstate.c
// replaced by the seeded copy.
const SOURCES = [
  'lapi', 'lcode', 'lctype', 'ldebug', 'ldo', 'ldump', 'lfunc', 'lgc', 'llex', 'lmem', 'lobject', 'lopcodes',
  'lparser', 'hb-lstate', 'lstring', 'ltable', 'ltm', 'lundump', 'lvm', 'lzio',
  'lauxlib', 'lbaselib', 'lbitlib', 'lcorolib', 'ldblib', 'liolib', 'lmathlib', 'loslib', 'lstrlib', 'ltablib',
  'lutf8lib', 'loadlib', 'linit',
].map((f) => `${f}.c`);
const RECIPE_VERSION = 4; // bump when the way the cache entry is made changes

function seededLstate(src) {
  const line = 'g->seed = makeseed(L);';
  if (!src.includes(line)) throw new Error('lstate.c: the seed line to replace was not found');
  return (
    '/* hb-runtimes: lstate.c with a fixed string-hash seed (see scripts/fetch-lua.js). */\n' +
    '#ifndef HB_LUA_SEED\n#define HB_LUA_SEED 0x2545F491u\n#endif\n' +
    src.replace(line, 'g->seed = (unsigned int)(HB_LUA_SEED); (void)makeseed;')
  );
}

// ---- Step meter (limits) ----------------------------------------------------------------------------
// The meter lives in the addon (one per state; every thread's extra space points to it). HB_TICK is
// a decrement and a compare; only when the credit runs out does it call hb_meter_settle, which
// charges the instruction budget and raises the limit error (lua_error) once it is spent.
const METER_HEADER = `/* hb-runtimes: the step meter shared by the instruction budget and the C library (see
   scripts/fetch-lua.js and native/lua_vm.cc). */
#ifndef HB_METER_H
#define HB_METER_H
#include <stddef.h>
#include "lua.h"

typedef struct hb_meter {
  long long credit;  /* steps left in the current grant; below 0: hb_meter_settle */
  long long grant;   /* size of the current grant */
  int finalizing;    /* > 0 while a __gc finalizer runs (host functions are refused then) */
  void *owner;       /* the addon's object for this state */
} hb_meter;

/* The state's meter: the extra space of every thread of the state points to it. */
#define hb_meter_of(L) (*(hb_meter **)lua_getextraspace(L))

/* Implemented by the addon: charges the spent grant to the budget, then either grants more or
   raises the limit error (so it is called only where a Lua error may be raised). */
void hb_meter_settle(lua_State *L);

/* Implemented by the addon, called by lua_resume: the coroutine L takes the count hook of the
   thread that resumes it (Lua copies hooks only when a thread is created), so that limits that
   begin with a call also reach coroutines created before it or restored from a snapshot. */
void hb_resume_hook(lua_State *L, lua_State *from);

/* The meter of the VM whose call runs on this thread (NULL outside calls), for code without a
   lua_State: HB_DEFER only lowers the credit; the next HB_TICK or count hook settles it. */
extern __thread hb_meter *hb_meter_current;
#define HB_DEFER(n) do { hb_meter *hb_c_ = hb_meter_current; \\
    if (hb_c_ != NULL) hb_c_->credit -= (long long)(n); } while (0)

/* Lowers the credit of L's meter without raising (for code that may run outside protection). */
#define HB_DEFER_L(L, n) (hb_meter_of(L)->credit -= (long long)(n))

/* Charges n steps (about one VM instruction's worth of work each). */
#define HB_TICK(L, n) do { hb_meter *hb_m_ = hb_meter_of(L); \\
    if ((hb_m_->credit -= (long long)(n)) < 0) hb_meter_settle(L); } while (0)
/* Steps for n bytes copied or scanned in bulk (memcpy, memchr, memcmp). */
#define HB_BYTES(n) ((size_t)(n) >> 6)
/* Steps for n bytes handled one by one in C (a function call or a branch per byte). */
#define HB_CHARS(n) ((size_t)(n) >> 3)
#endif
`;

// Replaces `anchor` (which must occur exactly `count` times) by `replacement`.
function patch(src, file, anchor, replacement, count = 1) {
  const found = src.split(anchor).length - 1;
  if (found !== count) throw new Error(`${file}: expected ${count} occurrence(s) of ${JSON.stringify(anchor)}, found ${found}`);
  return src.split(anchor).join(replacement);
}

// Every patched file includes hb-meter.h right after lprefix.h (which must stay first).
function includeMeter(src, file) {
  return patch(src, file, '#include "lprefix.h"\n', '#include "lprefix.h"\n#include "hb-meter.h"  /* hb-runtimes */\n');
}

// lstrlib.c: pattern matching (every match step, class scans, %b, back-references), plain find,
// string.rep (and "" at once when both the string and the separator are empty, instead of n
// empty copies), reverse/lower/upper, byte, format (%q), gsub replacement strings, pack.
function meteredLstrlib(src) {
  const f = 'lstrlib.c';
  src = includeMeter(src, f);
  src = patch(src, f, 'char *p = luaL_buffinitsize(L, &b, l);\n', 'char *p = luaL_buffinitsize(L, &b, l);\n  HB_TICK(L, 1 + HB_CHARS(l));\n', 3);
  src = patch(src, f, '  if (n <= 0) lua_pushliteral(L, "");\n', '  if (n <= 0 || l + lsep == 0) lua_pushliteral(L, "");\n');
  src = patch(src, f, '    while (n-- > 1) {  /* first n-1 copies (followed by separator) */\n',
    '    while (n-- > 1) {  /* first n-1 copies (followed by separator) */\n      HB_TICK(L, 1 + HB_BYTES(l + lsep));\n');
  src = patch(src, f, '  luaL_checkstack(L, n, "string slice too long");\n  for (i=0; i<n; i++)\n',
    '  luaL_checkstack(L, n, "string slice too long");\n  HB_TICK(L, n);\n  for (i=0; i<n; i++)\n');
  src = patch(src, f, "    case '[': {\n      if (*p == '^') p++;\n", "    case '[': {\n      const char *hb_p0 = p;\n      if (*p == '^') p++;\n");
  src = patch(src, f, "      } while (*p != ']');\n      return p+1;\n", "      } while (*p != ']');\n      HB_TICK(ms->L, HB_CHARS(p - hb_p0));\n      return p+1;\n");
  src = patch(src, f, "      case '[': return matchbracketclass(c, p, ep-1);\n",
    "      case '[': HB_TICK(ms->L, HB_CHARS(ep - p)); return matchbracketclass(c, p, ep-1);\n");
  src = patch(src, f,
    '    int cont = 1;\n    while (++s < ms->src_end) {\n      if (*s == e) {\n        if (--cont == 0) return s+1;\n      }\n      else if (*s == b) cont++;\n    }\n',
    '    int cont = 1;\n    const char *hb_s0 = s;\n    while (++s < ms->src_end) {\n      if (*s == e) {\n' +
      '        if (--cont == 0) { HB_TICK(ms->L, HB_CHARS(s - hb_s0)); return s+1; }\n      }\n      else if (*s == b) cont++;\n    }\n' +
      '    HB_TICK(ms->L, HB_CHARS(s - hb_s0));\n');
  src = patch(src, f, '  while (singlematch(ms, s + i, p, ep))\n    i++;\n', '  while (singlematch(ms, s + i, p, ep))\n    i++;\n  HB_TICK(ms->L, HB_CHARS(i));\n');
  src = patch(src, f, '  len = ms->capture[l].len;\n', '  len = ms->capture[l].len;\n  HB_TICK(ms->L, HB_BYTES(len));\n');
  src = patch(src, f, "  init: /* using goto's to optimize tail recursion */\n", "  init: /* using goto's to optimize tail recursion */\n  HB_TICK(ms->L, 1);\n");
  src = patch(src, f, 'static const char *lmemfind (const char *s1, size_t l1,\n',
    'static const char *lmemfind (lua_State *L, const char *s1, size_t l1,\n');
  src = patch(src, f, '      init++;   /* 1st char is already checked */\n',
    '      init++;   /* 1st char is already checked */\n      HB_TICK(L, 1 + HB_BYTES(init - s1) + HB_BYTES(l2));\n');
  src = patch(src, f, '    return NULL;  /* not found */\n', '    HB_TICK(L, HB_BYTES(l1));\n    return NULL;  /* not found */\n');
  src = patch(src, f, 'lmemfind(s + init - 1,', 'lmemfind(L, s + init - 1,');
  src = patch(src, f, '  const char *news = lua_tolstring(L, 3, &l);\n', '  const char *news = lua_tolstring(L, 3, &l);\n  HB_TICK(L, HB_CHARS(l));\n');
  src = patch(src, f, 'static void addquoted (luaL_Buffer *b, const char *s, size_t len) {\n',
    'static void addquoted (luaL_Buffer *b, const char *s, size_t len) {\n  HB_TICK(b->L, len);\n');
  src = patch(src, f, '  const char *strfrmt_end = strfrmt+sfl;\n', '  const char *strfrmt_end = strfrmt+sfl;\n  HB_TICK(L, HB_CHARS(sfl));\n');
  src = patch(src, f, '    else { /* format item */\n', '    else { /* format item */\n      HB_TICK(L, 1);\n');
  src = patch(src, f, "  while (*fmt != '\\0') {\n", "  while (*fmt != '\\0') {\n    HB_TICK(L, 1);\n", 3);
  src = patch(src, f, '        luaL_addlstring(&b, s, len);  /* add string */\n',
    '        HB_TICK(L, HB_CHARS(size));\n        luaL_addlstring(&b, s, len);  /* add string */\n');
  return src;
}

// ltablib.c: one step per element moved, concatenated, unpacked or compared by table.sort.
function meteredLtablib(src) {
  const f = 'ltablib.c';
  src = includeMeter(src, f);
  src = patch(src, f, '      for (i = e; i > pos; i--) {  /* move up elements */\n', '      for (i = e; i > pos; i--) {  /* move up elements */\n        HB_TICK(L, 1);\n');
  src = patch(src, f, '  for ( ; pos < size; pos++) {\n', '  for ( ; pos < size; pos++) {\n    HB_TICK(L, 1);\n');
  src = patch(src, f, '        lua_geti(L, 1, f + i);\n', '        HB_TICK(L, 1);\n        lua_geti(L, 1, f + i);\n', 2);
  src = patch(src, f, '  for (; i < last; i++) {\n    addfield(L, &b, i);\n', '  for (; i < last; i++) {\n    HB_TICK(L, 1);\n    addfield(L, &b, i);\n');
  src = patch(src, f, '    return luaL_error(L, "too many results to unpack");\n', '    return luaL_error(L, "too many results to unpack");\n  HB_TICK(L, n);\n');
  src = patch(src, f, 'static int sort_comp (lua_State *L, int a, int b) {\n', 'static int sort_comp (lua_State *L, int a, int b) {\n  HB_TICK(L, 1);\n');
  return src;
}

// lutf8lib.c: len, codepoint, offset and codes charge the bytes they walk.
function meteredLutf8lib(src) {
  const f = 'lutf8lib.c';
  src = includeMeter(src, f);
  src = patch(src, f, '  while (posi <= posj) {\n', '  if (posi <= posj) HB_TICK(L, 1 + HB_CHARS(posj - posi + 1));\n  while (posi <= posj) {\n');
  src = patch(src, f, '  luaL_checkstack(L, n, "string slice too long");\n  n = 0;\n', '  luaL_checkstack(L, n, "string slice too long");\n  HB_TICK(L, n);\n  n = 0;\n');
  src = patch(src, f, '  if (n == 0) {\n    /* find beginning of current byte sequence */\n',
    '  lua_Integer hb_posi0 = posi;\n  if (n == 0) {\n    /* find beginning of current byte sequence */\n');
  src = patch(src, f, '  if (n == 0)  /* did it find given character? */\n',
    '  HB_TICK(L, 1 + HB_CHARS(posi > hb_posi0 ? posi - hb_posi0 : hb_posi0 - posi));\n  if (n == 0)  /* did it find given character? */\n');
  src = patch(src, f, '    while (iscont(s + n)) n++;  /* and its continuations */\n',
    '    lua_Integer hb_n0 = n;\n    while (iscont(s + n)) n++;  /* and its continuations */\n    HB_TICK(L, HB_CHARS(n - hb_n0));\n');
  return src;
}

// lauxlib.c: every append to a luaL_Buffer (table.concat, gsub, string.format's %s, ...) charges
// its bytes.
function meteredLauxlib(src) {
  const f = 'lauxlib.c';
  src = includeMeter(src, f);
  return patch(src, f, "  if (l > 0) {  /* avoid 'memcpy' when 's' can be NULL */\n    char *b = luaL_prepbuffsize(B, l);\n",
    "  if (l > 0) {  /* avoid 'memcpy' when 's' can be NULL */\n    char *b;\n    HB_TICK(B->L, HB_BYTES(l));\n    b = luaL_prepbuffsize(B, l);\n");
}

// lvm.c: one VM instruction can compare or concatenate strings of any length, or copy any number
// of values; charge their bytes/values (equality: lstring.c). The count hook's countdown is
// inlined in the instruction fetch.
function meteredLvm(src) {
  const f = 'lvm.c';
  src = includeMeter(src, f);
  src = patch(src, f, 'int luaV_lessthan (lua_State *L, const TValue *l, const TValue *r) {\n',
    '/* hb-runtimes: l_strcmp charged to the step meter (not inlined: keeps the number paths of\n' +
      '   luaV_lessthan/lessequal as lean as before). */\n' +
      'static int __attribute__((noinline)) hb_strcmp (lua_State *L, const TString *ls, const TString *rs) {\n' +
      '  size_t ll = tsslen(ls), lr = tsslen(rs);\n  HB_TICK(L, HB_BYTES(ll < lr ? ll : lr));\n  return l_strcmp(ls, rs);\n}\n\n\n' +
      'int luaV_lessthan (lua_State *L, const TValue *l, const TValue *r) {\n');
  src = patch(src, f, 'return l_strcmp(tsvalue(l), tsvalue(r)) < 0;', 'return hb_strcmp(L, tsvalue(l), tsvalue(r)) < 0;');
  src = patch(src, f, 'return l_strcmp(tsvalue(l), tsvalue(r)) <= 0;', 'return hb_strcmp(L, tsvalue(l), tsvalue(r)) <= 0;');
  src = patch(src, f, '        ts = luaS_createlngstrobj(L, tl);\n', '        HB_TICK(L, HB_BYTES(tl));\n        ts = luaS_createlngstrobj(L, tl);\n');
  // The count hook's countdown inlined in the instruction fetch: Lua calls luaG_traceexec on every
  // instruction while a count hook is set, only to decrement the count (about +40% on fib(27));
  // now it is called when the count runs out (or for line hooks), with the same effect.
  src = patch(src, f, '  if (L->hookmask & (LUA_MASKLINE | LUA_MASKCOUNT)) \\\n    Protect(luaG_traceexec(L)); \\\n',
    '  if (L->hookmask & (LUA_MASKLINE | LUA_MASKCOUNT)) { \\\n' +
      '    if ((L->hookmask & LUA_MASKLINE) || L->hookcount <= 1) { \\\n      Protect(luaG_traceexec(L)); \\\n' +
      '    } else L->hookcount--;  /* hb-runtimes: what luaG_traceexec would do */ \\\n  } \\\n');
  // `...` and `{...}`/`{f()}` copy every value: a step per 4 values beyond 64.
  src = patch(src, f, '          n = 0;  /* no vararg arguments */\n', '          n = 0;  /* no vararg arguments */\n        if (n > 64) HB_TICK(L, n >> 2);\n');
  src = patch(src, f, '        if (n == 0) n = cast_int(L->top - ra) - 1;\n', '        if (n == 0) n = cast_int(L->top - ra) - 1;\n        if (n > 64) HB_TICK(L, n >> 2);\n');
  return src;
}

// lgc.c: __gc finalizers (only reachable through opt-in libraries or metatables restored from a
// snapshot; the sandbox's setmetatable refuses __gc) run with debug hooks on, so under the
// instruction budget (Lua turns hooks off there); their errors are dropped as in Lua 5.4 instead of
// being raised from whatever allocation ran the collector (which may be outside any protected
// call), and, as in Lua 5.4, the error object luaD_pcall leaves is popped: left there, every failed
// finalizer raised the stack top by one under the C function that triggered the collection, which
// then read a wrong slot (a finalizer fails with "C stack overflow" when the collection runs deep
// in an error handler's recursion: issue #14's xpcall segfault); and the meter's `finalizing`
// count lets the addon refuse host functions meanwhile.
function budgetedFinalizers(src) {
  const f = 'lgc.c';
  src = includeMeter(src, f);
  src = patch(src, f, '    L->allowhook = 0;  /* stop debug hooks during GC metamethod */\n',
    '    /* hb-runtimes: hooks stay on (the instruction budget applies to finalizers) */\n');
  src = patch(src, f, '    status = luaD_pcall(L, dothecall, NULL, savestack(L, L->top - 2), 0);\n',
    '    hb_meter_of(L)->finalizing++;\n    status = luaD_pcall(L, dothecall, NULL, savestack(L, L->top - 2), 0);\n' +
      '    hb_meter_of(L)->finalizing--;\n');
  src = patch(src, f, '    if (status != LUA_OK && propagateerrors) {  /* error while running __gc? */\n',
    '    (void)propagateerrors;  /* hb-runtimes: finalizer errors are dropped (their error object popped) */\n' +
      '    if (status != LUA_OK) L->top--;\n    if (status != LUA_OK && 0) {  /* error while running __gc? */\n');
  return src;
}

// lstring.c: comparing two long strings of the same length (==, and table keys: long strings hash
// only ~32 of their bytes, so many equal-length keys can share a chain) is a memcmp of their
// length, also from table lookups that have no lua_State: charged through HB_DEFER.
function meteredLstring(src) {
  const f = 'lstring.c';
  src = includeMeter(src, f);
  return patch(src, f, '  return (a == b) ||  /* same instance or... */\n',
    '  if (a != b && len == b->u.lnglen) HB_DEFER(HB_BYTES(len));\n  return (a == b) ||  /* same instance or... */\n');
}

// loslib.c: os.date (in the safe set) walks its format, one strftime per conversion.
function meteredLoslib(src) {
  const f = 'loslib.c';
  src = includeMeter(src, f);
  src = patch(src, f, '    luaL_buffinit(L, &b);\n    while (s < se) {\n', '    luaL_buffinit(L, &b);\n    HB_TICK(L, 1 + HB_CHARS(se - s));\n    while (s < se) {\n');
  return patch(src, f, "        s++;  /* skip '%' */\n", "        s++;  /* skip '%' */\n        HB_TICK(L, 32);  /* strftime */\n");
}

// lobject.c: string->number conversion (tonumber, arithmetic on strings) scans the whole string.
// Deferred: it runs from code without a lua_State.
function meteredLobject(src) {
  const f = 'lobject.c';
  src = includeMeter(src, f);
  return patch(src, f, 'size_t luaO_str2num (const char *s, TValue *o) {\n  lua_Integer i; lua_Number n;\n  const char *e;\n',
    'size_t luaO_str2num (const char *s, TValue *o) {\n  lua_Integer i; lua_Number n;\n  const char *e;\n  HB_DEFER(HB_CHARS(strlen(s)));\n');
}

// ltable.c: next() walks empty slots up to the next entry (a table emptied after growing keeps its
// size). Deferred (HB_DEFER_L): lua_next runs in the addon outside protection.
function meteredLtable(src) {
  const f = 'ltable.c';
  src = includeMeter(src, f);
  src = patch(src, f, '  unsigned int i = findindex(L, t, key);  /* find original element */\n',
    '  unsigned int i = findindex(L, t, key);  /* find original element */\n  unsigned int hb_n = 0;  /* slots walked */\n');
  src = patch(src, f, '  for (; i < t->sizearray; i++) {  /* try first array part */\n', '  for (; i < t->sizearray; i++, hb_n++) {  /* try first array part */\n');
  src = patch(src, f, '  for (i -= t->sizearray; cast_int(i) < sizenode(t); i++) {  /* hash part */\n',
    '  for (i -= t->sizearray; cast_int(i) < sizenode(t); i++, hb_n++) {  /* hash part */\n');
  src = patch(src, f, '      setobj2s(L, key+1, &t->array[i]);\n      return 1;\n', '      setobj2s(L, key+1, &t->array[i]);\n      if (hb_n >= 8) HB_DEFER_L(L, HB_CHARS(hb_n));\n      return 1;\n');
  src = patch(src, f, '      setobj2s(L, key+1, gval(gnode(t, i)));\n      return 1;\n',
    '      setobj2s(L, key+1, gval(gnode(t, i)));\n      if (hb_n >= 8) HB_DEFER_L(L, HB_CHARS(hb_n));\n      return 1;\n');
  return patch(src, f, '  return 0;  /* no more elements */\n', '  if (hb_n >= 8) HB_DEFER_L(L, HB_CHARS(hb_n));\n  return 0;  /* no more elements */\n');
}

// ldo.c: a call with many arguments (f(table.unpack(t)), tail calls of vararg functions) and a
// return of many results move every value: a step per 4 values beyond 64. lua_resume gives the
// coroutine the count hook of the resuming thread (hb_resume_hook).
function meteredLdo(src) {
  const f = 'ldo.c';
  src = includeMeter(src, f);
  src = patch(src, f, '      int n = cast_int(L->top - func) - 1;  /* number of real arguments */\n',
    '      int n = cast_int(L->top - func) - 1;  /* number of real arguments */\n      if (n > 64) HB_TICK(L, n >> 2);\n');
  src = patch(src, f, '  int wanted = ci->nresults;\n  if (L->hookmask & (LUA_MASKRET | LUA_MASKLINE)) {\n',
    '  int wanted = ci->nresults;\n  if (nres > 64) HB_TICK(L, nres >> 2);\n  if (L->hookmask & (LUA_MASKRET | LUA_MASKLINE)) {\n');
  // lua_resume: the coroutine ticks like the thread that resumes it (hb_resume_hook).
  return patch(src, f, '  unsigned short oldnny = L->nny;  /* save "number of non-yieldable" calls */\n  lua_lock(L);\n',
    '  unsigned short oldnny = L->nny;  /* save "number of non-yieldable" calls */\n  lua_lock(L);\n  hb_resume_hook(L, from);\n');
}

// ltablib.c: table.sort re-randomizes its pivot from clock() and time() when a partition comes out
// unbalanced, so sorting with ties (or an inconsistent comparator) could order elements, or fail,
// differently from run to run. A hash of the range being sorted keeps the defence against
// adversarial inputs and makes the choice the same in every run (decision 8: determinism).
function deterministicSortPivot(src) {
  return patch(src, 'ltablib.c', '#if !defined(l_randomizePivot)',
    '/* hb-runtimes: deterministic pivot choice (see scripts/fetch-lua.js) */\n' +
    '#define l_randomizePivot() ((unsigned int)(lo * 2654435761u) ^ (unsigned int)(up * 40503u))\n' +
    '#if !defined(l_randomizePivot)');
}

// lgc.c: a removed key keeps its node, with a nil value, until the table is resized; a collection
// that traverses the table marks such a key dead when nothing else references it, and a dead key
// no longer matches when the same string is stored again, which then takes another node. So the
// layout of a table, and its `pairs` order, depended on when collections happened to run, and a
// restored VM (whose collector starts afresh) could diverge from the original. Removed string keys
// are kept alive instead (strings are never weak, and the node is reused for the same key, or
// freed by the next resize); other removed keys still die with their objects, which nothing can
// store again.
function keptStaleKeys(src) {
  src = patch(src, 'lgc.c',
    '    setdeadvalue(wgkey(n));  /* unused and unmarked key; remove it */\n}\n',
    '    setdeadvalue(wgkey(n));  /* unused and unmarked key; remove it */\n}\n\n' +
    '/* hb-runtimes: an empty node keeps its string key (see scripts/fetch-lua.js, keptStaleKeys) */\n' +
    'static void hb_emptyentry (global_State *g, Node *n) {\n' +
    '  if (ttisstring(gkey(n))) {\n    markvalue(g, gkey(n));\n  } else {\n    removeentry(n);\n  }\n}\n');
  return patch(src, 'lgc.c', '      removeentry(n);  /* remove it */\n', '      hb_emptyentry(g, n);  /* remove it */\n', 3);
}

const METERED = [
  ['lstrlib.c', meteredLstrlib],
  ['ltablib.c', meteredLtablib],
  ['lutf8lib.c', meteredLutf8lib],
  ['lauxlib.c', meteredLauxlib],
  ['lvm.c', meteredLvm],
  ['lstring.c', meteredLstring],
  ['loslib.c', meteredLoslib],
  ['lobject.c', meteredLobject],
  ['ltable.c', meteredLtable],
  ['ldo.c', meteredLdo],
  ['lgc.c', budgetedFinalizers],
];

// Writes hb-meter.h and patches the METERED files in the cache copy `dir`.
function applyLimitPatches(dir) {
  fs.writeFileSync(path.join(dir, 'hb-meter.h'), METER_HEADER);
  for (const [file, fn] of METERED) {
    const p = path.join(dir, file);
    fs.writeFileSync(p, fn(fs.readFileSync(p, 'utf8')));
  }
}

// Serial numbers (for snapshots): a `hbserial` field in Table, closures, Udata and lua_State, a
// counter in global_State, assigned in luaC_newobj (strings and protos take none), and
// ltable.c's mainposition hashing such keys by serial. Without it, tables with table/function
// keys have an address-dependent layout, so `pairs` order differs between processes and a restored
// table could not be rebuilt slot by slot. `files` maps a file name to its text; returns the
// patched texts.
function serialPatches(files) {
  const out = { ...files };
  out['lobject.h'] = patch(out['lobject.h'], 'lobject.h',
    '  lu_byte ttuv_;  /* user value\'s tag */\n',
    '  lu_byte ttuv_;  /* user value\'s tag */\n  unsigned int hbserial;  /* hb-runtimes: creation serial (key hash) */\n');
  out['lobject.h'] = patch(out['lobject.h'], 'lobject.h',
    '\tCommonHeader; lu_byte nupvalues; GCObject *gclist',
    '\tCommonHeader; lu_byte nupvalues; unsigned int hbserial; GCObject *gclist');
  out['lobject.h'] = patch(out['lobject.h'], 'lobject.h',
    '  unsigned int sizearray;  /* size of \'array\' array */\n',
    '  unsigned int sizearray;  /* size of \'array\' array */\n  unsigned int hbserial;  /* hb-runtimes: creation serial (key hash) */\n');
  out['lstate.h'] = patch(out['lstate.h'], 'lstate.h',
    '  unsigned short nci;  /* number of items in \'ci\' list */\n',
    '  unsigned short nci;  /* number of items in \'ci\' list */\n  unsigned int hbserial;  /* hb-runtimes: creation serial (key hash) */\n');
  out['lstate.h'] = patch(out['lstate.h'], 'lstate.h',
    '  unsigned int seed;  /* randomized seed for hashes */\n',
    '  unsigned int seed;  /* randomized seed for hashes */\n  unsigned int hbserial;  /* hb-runtimes: next object serial */\n');
  out['hb-lstate.c'] = patch(out['hb-lstate.c'], 'hb-lstate.c', '  L->next = NULL;\n',
    '  L->next = NULL;\n  L->hbserial = 0; g->hbserial = 1;  /* hb-runtimes: the main thread is serial 0 */\n');
  out['hb-lstate.c'] = patch(out['hb-lstate.c'], 'hb-lstate.c', '  L1->tt = LUA_TTHREAD;\n',
    '  L1->tt = LUA_TTHREAD;\n  L1->hbserial = g->hbserial++;  /* hb-runtimes: creation serial */\n');
  out['lgc.c'] = patch(out['lgc.c'], 'lgc.c', '  g->allgc = o;\n  return o;\n',
    '  g->allgc = o;\n' +
    '  switch (tt) {  /* hb-runtimes: creation serials, see lobject.h */\n' +
    '    case LUA_TTABLE: gco2t(o)->hbserial = g->hbserial++; break;\n' +
    '    case LUA_TLCL: gco2lcl(o)->hbserial = g->hbserial++; break;\n' +
    '    case LUA_TCCL: gco2ccl(o)->hbserial = g->hbserial++; break;\n' +
    '    case LUA_TUSERDATA: gco2u(o)->hbserial = g->hbserial++; break;\n' +
    '    case LUA_TTHREAD: gco2th(o)->hbserial = g->hbserial++; break;\n' +
    '    default: break;\n  }\n  return o;\n');
  out['ltable.c'] = patch(out['ltable.c'], 'ltable.c',
    '    case LUA_TLIGHTUSERDATA:\n      return hashpointer(t, pvalue(key));\n    case LUA_TLCF:\n      return hashpointer(t, fvalue(key));\n    default:\n      lua_assert(!ttisdeadkey(key));\n      return hashpointer(t, gcvalue(key));\n',
    '    case LUA_TLIGHTUSERDATA:  /* hb-runtimes: not by address (ASLR); all in one chain */\n      return hashmod(t, 0);\n' +
    '    case LUA_TLCF:  /* hb-runtimes: not by address (ASLR); all in one chain */\n      return hashmod(t, 0);\n' +
    '    default:  /* hb-runtimes: by creation serial, not by address */\n      lua_assert(!ttisdeadkey(key));\n' +
    '      return hashmod(t, hb_keyserial(gcvalue(key)));\n');
  out['ltable.c'] = patch(out['ltable.c'], 'ltable.c', 'static Node *mainposition (const Table *t, const TValue *key) {\n',
    '/* hb-runtimes: the creation serial of a collectable key (strings hash by content). */\n' +
    'static unsigned int hb_keyserial (GCObject *o) {\n  switch (o->tt) {\n' +
    '    case LUA_TTABLE: return gco2t(o)->hbserial;\n    case LUA_TLCL: return gco2lcl(o)->hbserial;\n' +
    '    case LUA_TCCL: return gco2ccl(o)->hbserial;\n    case LUA_TUSERDATA: return gco2u(o)->hbserial;\n' +
    '    case LUA_TTHREAD: return gco2th(o)->hbserial;\n    default: return 0;\n  }\n}\n\n' +
    'static Node *mainposition (const Table *t, const TValue *key) {\n');
  // The snapshot reader checks that every key of a restored table is on its main position's chain.
  out['ltable.c'] = `${out['ltable.c']}\n/* hb-runtimes: for the snapshot reader's table checks. */\n` +
    'Node *hb_mainposition (const Table *t, const TValue *key) { return mainposition(t, key); }\n';
  return out;
}

async function fetchLua() {
  // The key covers this script too: two branches that both bump RECIPE_VERSION to the same number
  // with different patches must not share a cache entry.
  const key = sha256(fs.readFileSync(path.join(RECIPE, 'Cargo.lock')), String(RECIPE_VERSION), fs.readFileSync(__filename))
    .slice(0, 16);
  const entry = path.join(CACHE, 'lua', `${LUA_VERSION}-${key}`);
  if (fs.existsSync(path.join(entry, 'hb-lstate.c'))) return entry;
  log(`Lua ${LUA_VERSION}: fetching the pinned lua-src crate`);
  await run('cargo', ['fetch', '--locked', '--manifest-path', path.join(RECIPE, 'Cargo.toml')]);
  const crate = cargoPackageDir(RECIPE, 'lua-src');
  const src = path.join(crate.dir, `lua-${LUA_VERSION}`);
  const header = fs.readFileSync(path.join(src, 'lua.h'), 'utf8');
  if (!header.includes(`#define LUA_VERSION_RELEASE\t"${LUA_VERSION.split('.')[2]}"`)) {
    throw new Error(`lua-src ${crate.version} does not carry Lua ${LUA_VERSION}`);
  }
  const tmp = `${entry}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.cpSync(src, tmp, { recursive: true });
  fs.writeFileSync(path.join(tmp, 'hb-lstate.c'), seededLstate(fs.readFileSync(path.join(src, 'lstate.c'), 'utf8')));
  const serialFiles = ['lobject.h', 'lstate.h', 'hb-lstate.c', 'lgc.c', 'ltable.c'];
  const patched = serialPatches(Object.fromEntries(serialFiles.map((f) => [f, fs.readFileSync(path.join(tmp, f), 'utf8')])));
  for (const f of serialFiles) fs.writeFileSync(path.join(tmp, f), patched[f]);
  const lgc = path.join(tmp, 'lgc.c');
  fs.writeFileSync(lgc, keptStaleKeys(fs.readFileSync(lgc, 'utf8')));
  applyLimitPatches(tmp);
  const ltablib = path.join(tmp, 'ltablib.c');
  fs.writeFileSync(ltablib, deterministicSortPivot(fs.readFileSync(ltablib, 'utf8')));
  publishDir(tmp, entry);
  log(`Lua ${LUA_VERSION}: sources from lua-src ${crate.version} at ${entry}`);
  return entry;
}

module.exports = { fetchLua, LUA_VERSION, SOURCES };
if (require.main === module) {
  fetchLua().then(
    (dir) => {
      // --sources: absolute paths (CMake); --sources-relative: relative to the current directory
      // (gyp's make generator only handles sources given relative to the project).
      const rel = process.argv.includes('--sources-relative');
      if (rel || process.argv.includes('--sources')) {
        const files = SOURCES.map((f) => (rel ? path.relative(process.cwd(), path.join(dir, f)) : path.join(dir, f)));
        process.stdout.write(`${files.join('\n')}\n`);
      } else {
        process.stdout.write(`${dir}\n`);
      }
    },
    (e) => {
      log(e.message);
      process.exit(1);
    },
  );
}
