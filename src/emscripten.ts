/**
 * Emscripten's JS-side exception and longjmp protocol for modules built with JS-style exceptions
 * (`-fexceptions` without wasm EH): `invoke_<sig>(index, ...args)` calls a table element; when the
 * callee throws (a C++ exception through `__cxa_throw`, or `longjmp`), the invoke restores the stack
 * pointer, calls `setThrew(1, 0)` and returns 0, and the guest's landing pad takes over.
 * HyperBEAM's trampolines dropped return values and ignored throws (SPEC §2.3); these do not.
 */
import { AoError } from './errors';
import type { WasmInstance, WasmValue } from './wasm';

/** Thrown by `__cxa_throw` / `_emscripten_throw_longjmp` imports: unwinds to the nearest invoke. */
export class EmscriptenUnwind extends Error {
  constructor(readonly kind: 'exception' | 'longjmp', readonly pointer: WasmValue = 0) {
    super(kind === 'exception' ? `uncaught C++ exception (${pointer})` : 'longjmp');
  }
}

function unwindOf(e: unknown): EmscriptenUnwind | undefined {
  if (e instanceof EmscriptenUnwind) return e;
  const cause = (e as { cause?: unknown } | null)?.cause;
  return cause instanceof EmscriptenUnwind ? cause : undefined;
}

/** The `invoke_<sig>` import for `name`, calling into the instance `getInstance()` returns. */
export function invokeImport(name: string, getInstance: () => WasmInstance): (...args: WasmValue[]) => WasmValue | undefined {
  const sig = name.slice('invoke_'.length);
  const ret = sig[0];
  const zero = ret === 'j' ? 0n : ret === 'v' ? undefined : 0;
  return (index: WasmValue, ...args: WasmValue[]) => {
    const inst = getInstance();
    const [sp] = inst.call('emscripten_stack_get_current', []);
    try {
      const out = inst.callTable(index, args);
      return ret === 'v' ? undefined : out[0];
    } catch (e) {
      if (!unwindOf(e)) throw e;
      inst.call('_emscripten_stack_restore', [sp!]);
      const setThrew = inst.module.exportType('setThrew');
      if (!setThrew) throw new AoError('the module uses invoke_* but exports no setThrew', { status: 500 });
      inst.call('setThrew', [setThrew.params[0] === 'i64' ? 1n : 1, 0]);
      return zero;
    }
  };
}

/** Import functions of the emscripten exception/longjmp protocol that the module declares. */
export function emscriptenImports(
  names: readonly string[],
  getInstance: () => WasmInstance,
): Record<string, (...args: WasmValue[]) => WasmValue | undefined> {
  const out: Record<string, (...args: WasmValue[]) => WasmValue | undefined> = {};
  for (const n of names) {
    if (n.startsWith('invoke_')) out[n] = invokeImport(n, getInstance);
    else if (n === '_emscripten_throw_longjmp') {
      out[n] = () => {
        throw new EmscriptenUnwind('longjmp');
      };
    } else if (n === '__cxa_throw') {
      out[n] = (ptr: WasmValue) => {
        throw new EmscriptenUnwind('exception', ptr);
      };
    }
  }
  return out;
}
