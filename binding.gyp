# node-gyp build of the same addon, for toolchains that expect binding.gyp. The default build is
# CMake (CMakeLists.txt via cmake-js, see docs/compilation.md); both take the pinned Wasmtime
# library and Lua sources from the cache that scripts/build-wasmtime.js and scripts/fetch-lua.js
# fill (running them here if needed), so they compile identical code.
{
  "variables": {
    "hb_wasmtime_dir": "<!(node scripts/build-wasmtime.js)",
    "hb_lua_dir": "<!(node scripts/fetch-lua.js)",
    "hb_lua_seed%": "0x2545F491u"
  },
  "targets": [
    {
      "target_name": "hb_lua",
      "type": "static_library",
      "sources": ["<!@(node scripts/fetch-lua.js --sources-relative)"],
      "include_dirs": ["<(hb_lua_dir)"],
      "defines": ["LUA_COMPAT_5_2", "LUA_USE_POSIX", "HB_LUA_SEED=<(hb_lua_seed)"],
      "cflags": ["-O2", "-w", "-fPIC", "-fvisibility=hidden"],
      "direct_dependent_settings": {
        "include_dirs": ["<(hb_lua_dir)"],
        "defines": ["LUA_COMPAT_5_2", "LUA_USE_POSIX"]
      }
    },
    {
      "target_name": "hb_runtimes",
      "dependencies": ["hb_lua"],
      "sources": ["<!@(node -p \"require('fs').readdirSync('native').filter(f => f.endsWith('.cc')).map(f => 'native/' + f).join(' ')\")"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "<(hb_wasmtime_dir)/include"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "WASM_API_EXTERN=", "WASI_API_EXTERN="],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++14", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O2", "-fvisibility=hidden"],
      "libraries": ["<(hb_wasmtime_dir)/lib/libhb_wasmtime.a", "-lpthread", "-ldl", "-lm", "-Wl,--exclude-libs,ALL", "-Wl,--gc-sections"]
    }
  ]
}
