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
// Second change, for snapshots (format v2, native/lua_snapshot.cc): every table, closure, userdata
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
const RECIPE_VERSION = 3; // bump when the way the cache entry is made changes

function seededLstate(src) {
  const line = 'g->seed = makeseed(L);';
  if (!src.includes(line)) throw new Error('lstate.c: the seed line to replace was not found');
  return (
    '/* hb-runtimes: lstate.c with a fixed string-hash seed (see scripts/fetch-lua.js). */\n' +
    '#ifndef HB_LUA_SEED\n#define HB_LUA_SEED 0x2545F491u\n#endif\n' +
    src.replace(line, 'g->seed = (unsigned int)(HB_LUA_SEED); (void)makeseed;')
  );
}

// Replaces `anchor` in `src` (which must contain it exactly once) by `by`.
function patchOnce(file, src, anchor, by) {
  const at = src.indexOf(anchor);
  if (at < 0 || src.indexOf(anchor, at + 1) >= 0) throw new Error(`${file}: the patch anchor was not found once: ${anchor}`);
  return src.slice(0, at) + by + src.slice(at + anchor.length);
}

// Serial numbers (for snapshots): a `hbserial` field in Table, closures, Udata and lua_State, a
// counter in global_State, assigned in luaC_newobj (strings and protos take none), and
// ltable.c's mainposition hashing such keys by serial. Without it, tables with table/function
// keys have an address-dependent layout, so `pairs` order differs between processes and a restored
// table could not be rebuilt slot by slot. `files` maps a file name to its text; returns the
// patched texts.
function serialPatches(files) {
  const out = { ...files };
  out['lobject.h'] = patchOnce('lobject.h', out['lobject.h'],
    '  lu_byte ttuv_;  /* user value\'s tag */\n',
    '  lu_byte ttuv_;  /* user value\'s tag */\n  unsigned int hbserial;  /* hb-runtimes: creation serial (key hash) */\n');
  out['lobject.h'] = patchOnce('lobject.h', out['lobject.h'],
    '\tCommonHeader; lu_byte nupvalues; GCObject *gclist',
    '\tCommonHeader; lu_byte nupvalues; unsigned int hbserial; GCObject *gclist');
  out['lobject.h'] = patchOnce('lobject.h', out['lobject.h'],
    '  unsigned int sizearray;  /* size of \'array\' array */\n',
    '  unsigned int sizearray;  /* size of \'array\' array */\n  unsigned int hbserial;  /* hb-runtimes: creation serial (key hash) */\n');
  out['lstate.h'] = patchOnce('lstate.h', out['lstate.h'],
    '  unsigned short nci;  /* number of items in \'ci\' list */\n',
    '  unsigned short nci;  /* number of items in \'ci\' list */\n  unsigned int hbserial;  /* hb-runtimes: creation serial (key hash) */\n');
  out['lstate.h'] = patchOnce('lstate.h', out['lstate.h'],
    '  unsigned int seed;  /* randomized seed for hashes */\n',
    '  unsigned int seed;  /* randomized seed for hashes */\n  unsigned int hbserial;  /* hb-runtimes: next object serial */\n');
  out['hb-lstate.c'] = patchOnce('hb-lstate.c', out['hb-lstate.c'], '  L->next = NULL;\n',
    '  L->next = NULL;\n  L->hbserial = 0; g->hbserial = 1;  /* hb-runtimes: the main thread is serial 0 */\n');
  out['hb-lstate.c'] = patchOnce('hb-lstate.c', out['hb-lstate.c'], '  L1->tt = LUA_TTHREAD;\n',
    '  L1->tt = LUA_TTHREAD;\n  L1->hbserial = g->hbserial++;  /* hb-runtimes: creation serial */\n');
  out['lgc.c'] = patchOnce('lgc.c', out['lgc.c'], '  g->allgc = o;\n  return o;\n',
    '  g->allgc = o;\n' +
    '  switch (tt) {  /* hb-runtimes: creation serials, see lobject.h */\n' +
    '    case LUA_TTABLE: gco2t(o)->hbserial = g->hbserial++; break;\n' +
    '    case LUA_TLCL: gco2lcl(o)->hbserial = g->hbserial++; break;\n' +
    '    case LUA_TCCL: gco2ccl(o)->hbserial = g->hbserial++; break;\n' +
    '    case LUA_TUSERDATA: gco2u(o)->hbserial = g->hbserial++; break;\n' +
    '    case LUA_TTHREAD: gco2th(o)->hbserial = g->hbserial++; break;\n' +
    '    default: break;\n  }\n  return o;\n');
  out['ltable.c'] = patchOnce('ltable.c', out['ltable.c'],
    '    case LUA_TLIGHTUSERDATA:\n      return hashpointer(t, pvalue(key));\n    case LUA_TLCF:\n      return hashpointer(t, fvalue(key));\n    default:\n      lua_assert(!ttisdeadkey(key));\n      return hashpointer(t, gcvalue(key));\n',
    '    case LUA_TLIGHTUSERDATA:  /* hb-runtimes: not by address (ASLR); all in one chain */\n      return hashmod(t, 0);\n' +
    '    case LUA_TLCF:  /* hb-runtimes: not by address (ASLR); all in one chain */\n      return hashmod(t, 0);\n' +
    '    default:  /* hb-runtimes: by creation serial, not by address */\n      lua_assert(!ttisdeadkey(key));\n' +
    '      return hashmod(t, hb_keyserial(gcvalue(key)));\n');
  out['ltable.c'] = patchOnce('ltable.c', out['ltable.c'], 'static Node *mainposition (const Table *t, const TValue *key) {\n',
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
  // The script's own text is part of the key: two branches that patch differently (and may both
  // bump RECIPE_VERSION) never share a cache entry.
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
