/**
 * WASI calls for the program's arguments and environment: `args_get`, `args_sizes_get`,
 * `environ_get`, `environ_sizes_get`. Strings are NUL-terminated, passed in the given order
 * (environment variables sorted by name).
 */
import type { WasmValue } from '../wasm';
import { Errno } from './errno';
import { addr, putSize, type Guest } from './guest';
import type { WasiCalls } from './signatures';
import type { CallContext } from './state';

/** NUL-terminated strings laid out one after the other, with their offsets. */
export function encodeStrings(list: readonly string[]): { bytes: Buffer; offsets: number[] } {
  const parts: Buffer[] = [];
  const offsets: number[] = [];
  let at = 0;
  for (const s of list) {
    offsets.push(at);
    const b = Buffer.from(`${s}\0`, 'utf8');
    parts.push(b);
    at += b.length;
  }
  return { bytes: Buffer.concat(parts, at), offsets };
}

function strings(g: Guest, s: { bytes: Buffer; offsets: number[] }, arrayPtr: WasmValue, bufPtr: WasmValue): number {
  const ap = addr(arrayPtr);
  const bp = addr(bufPtr);
  const arr = Buffer.alloc(s.offsets.length * g.word);
  g.check(ap, arr.length);
  g.check(bp, s.bytes.length);
  s.offsets.forEach((o, i) => putSize(arr, i * g.word, bp + o, g.wide));
  g.write(ap, arr);
  g.write(bp, s.bytes);
  return Errno.SUCCESS;
}

function sizes(g: Guest, s: { bytes: Buffer; offsets: number[] }, countPtr: WasmValue, sizePtr: WasmValue): number {
  const cp = addr(countPtr);
  const sp = addr(sizePtr);
  g.check(cp, g.word);
  g.check(sp, g.word);
  g.size(cp, s.offsets.length);
  g.size(sp, s.bytes.length);
  return Errno.SUCCESS;
}

export function argsCalls({ st, guest }: CallContext): WasiCalls {
  return {
    args_get: (argv, buf) => strings(guest(), st.argv, argv, buf),
    args_sizes_get: (argc, size) => sizes(guest(), st.argv, argc, size),
    environ_get: (envp, buf) => strings(guest(), st.environ, envp, buf),
    environ_sizes_get: (count, size) => sizes(guest(), st.environ, count, size),
  };
}
