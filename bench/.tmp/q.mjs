import { createRequire } from 'node:module';
import fs from 'node:fs';
const require = createRequire('/work/wt/lowering/bench/x.mjs');
const hb = require('/work/wt/lowering/lib/index.js');
const { translateLegacyExceptions } = require('/work/wt/lowering/lib/wasm-image.js');
const { lowerMemory64 } = require('/work/wt/lowering/lib/wasm-lower.js');
const { markMemory64Lowered } = require('/work/wt/lowering/lib/wasm.js');
const { default: binaryen } = await import('binaryen');
const image = fs.readFileSync('/work/shared/fixtures/aos-2-pure-xs.wasm');
const tr = await translateLegacyExceptions(image);
const mod = binaryen.readBinary(tr); const F = binaryen.Features; mod.setFeatures(F.ExceptionHandling | F.Memory64 | F.BulkMemory | F.SignExt | F.MutableGlobals | F.NontrappingFPToInt | F.ReferenceTypes | F.Multivalue); mod.runPasses(['memory64-lowering']); const wrapped = mod.emitBinary(); mod.dispose();
const ENV = { Process: { Id: 'AOS', Owner: 'FOOBAR', Tags: [{ name: 'Name', value: 'Thomas' }, { name: 'Authority', value: 'FOOBAR' }] } };
const msgOf = (i, data) => ({ From: 'FOOBAR', 'Block-Height': '1', Target: 'AOS', Owner: 'FOOBAR', Id: String(i), Module: 'W', Tags: [{ name: 'Action', value: 'Eval' }], Data: data });
const HEAVY = 'local t = {} for i = 1, 20000 do t[#t + 1] = tostring(i) end return #table.concat(t, ",")';
function h(bytes, low) {
  const m = hb.WasmModule.compile(bytes); if (low) markMemory64Lowered(m);
  const imports = {};
  for (const imp of m.imports) { const r = imp.type?.results[0]; (imports[imp.module] ??= {})[imp.name] = () => (r === 'i64' ? 0n : r ? 0 : undefined); }
  const inst = new hb.WasmInstance(m, imports);
  const envPtr = inst.writeString(JSON.stringify(ENV)); const scratch = inst.malloc(1 << 16);
  return (i, d) => { inst.memory.write(scratch, Buffer.from(`${JSON.stringify(msgOf(i, d))}\0`)); const [o] = inst.call('handle', [scratch, envPtr]); return JSON.parse(inst.readString(o)); };
}
const variants = { mine: h(lowerMemory64(tr).bytes, true), wrapped: h(wrapped, true), off: h(tr, false) };
if (process.argv[2]) variants.alt = h(fs.readFileSync(process.argv[2]), true);
for (const [data, n] of [['return 1 + 1', 200], [HEAVY, 8]]) {
  const rates = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  for (const f of Object.values(variants)) for (let i = 0; i < 3; i++) f(i, data);
  for (let r = 0; r < 7; r++) for (const [k, f] of Object.entries(variants)) { const t = performance.now(); for (let i = 0; i < n; i++) f(i, data); rates[k].push(n / ((performance.now() - t) / 1000)); }
  console.log(data.slice(0, 12), Object.entries(rates).map(([k, xs]) => `${k}=${xs.sort((a, b) => a - b)[3].toFixed(1)}`).join(' '));
}
