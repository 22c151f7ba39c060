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

/**
 * Emscripten's C++ exception runtime (library_exceptions.js) for one instance: the state lives
 * here, the exception records in guest memory. `__cxa_exception` sits just below the thrown
 * object: referenceCount, exceptionType, exceptionDestructor, caught (u8), rethrown (u8),
 * adjustedPtr, padding; 24 bytes on wasm32, 48 on wasm64.
 */
class CxaRuntime {
  last: WasmValue = 0;
  uncaught = 0;
  readonly caught: WasmValue[] = [];
  constructor(readonly getInstance: () => WasmInstance) {}

  get #inst(): WasmInstance {
    return this.getInstance();
  }
  get #wide(): boolean {
    return this.#inst.memory.is64;
  }
  /** Address of field `index` (0 refcount, 1 type, 2 destructor, 4 adjustedPtr; 3 = caught byte). */
  #field(exc: WasmValue, which: 'type' | 'destructor' | 'caught' | 'rethrown' | 'adjusted'): bigint {
    const w = this.#wide ? 8n : 4n;
    const base = BigInt(exc) - w * 6n; // __size__ = 6 words (48 / 24 bytes)
    const off = { type: w, destructor: 2n * w, caught: 3n * w, rethrown: 3n * w + 1n, adjusted: 4n * w }[which];
    return base + off;
  }
  #readPtr(addr: bigint): WasmValue {
    const b = this.#inst.memory.read(addr, this.#wide ? 8 : 4);
    return this.#wide ? b.readBigUInt64LE(0) : b.readUInt32LE(0);
  }
  #writePtr(addr: bigint, v: WasmValue): void {
    const b = Buffer.alloc(this.#wide ? 8 : 4);
    if (this.#wide) b.writeBigUInt64LE(BigInt(v));
    else b.writeUInt32LE(Number(v));
    this.#inst.memory.write(addr, b);
  }
  #byte(addr: bigint, v?: number): number {
    if (v === undefined) return this.#inst.memory.read(addr, 1)[0]!;
    this.#inst.memory.write(addr, Uint8Array.of(v));
    return v;
  }
  #ptr(v: WasmValue): WasmValue {
    return this.#wide ? BigInt(v) : Number(v);
  }
  #setTempRet(v: WasmValue): void {
    this.#inst.call('_emscripten_tempret_set', [Number(BigInt.asIntN(32, BigInt(v)))]);
  }

  throw(ptr: WasmValue, type: WasmValue, destructor: WasmValue): never {
    this.#writePtr(this.#field(ptr, 'adjusted'), 0);
    this.#writePtr(this.#field(ptr, 'type'), type);
    this.#writePtr(this.#field(ptr, 'destructor'), destructor);
    this.last = ptr;
    this.uncaught++;
    throw new EmscriptenUnwind('exception', ptr);
  }

  findMatchingCatch(types: WasmValue[]): WasmValue {
    const thrown = this.last;
    if (BigInt(thrown) === 0n) {
      this.#setTempRet(0);
      return this.#ptr(0);
    }
    this.#writePtr(this.#field(thrown, 'adjusted'), thrown);
    const thrownType = this.#readPtr(this.#field(thrown, 'type'));
    if (BigInt(thrownType) === 0n) {
      this.#setTempRet(0);
      return thrown;
    }
    for (const caughtType of types) {
      if (BigInt(caughtType) === 0n || BigInt(caughtType) === BigInt(thrownType)) break;
      const [ok] = this.#inst.call('__cxa_can_catch', [this.#ptr(caughtType), this.#ptr(thrownType), this.#ptr(this.#field(thrown, 'adjusted'))]);
      if (ok) {
        this.#setTempRet(caughtType);
        return thrown;
      }
    }
    this.#setTempRet(thrownType);
    return thrown;
  }

  beginCatch(ptr: WasmValue): WasmValue {
    if (!this.#byte(this.#field(ptr, 'caught'))) {
      this.#byte(this.#field(ptr, 'caught'), 1);
      this.uncaught--;
    }
    this.#byte(this.#field(ptr, 'rethrown'), 0);
    this.caught.push(ptr);
    this.#inst.call('__cxa_increment_exception_refcount', [this.#ptr(ptr)]);
    const type = this.#readPtr(this.#field(ptr, 'type'));
    const [isPointer] = this.#inst.call('__cxa_is_pointer_type', [this.#ptr(type)]);
    if (isPointer) return this.#readPtr(BigInt(ptr));
    const adjusted = this.#readPtr(this.#field(ptr, 'adjusted'));
    return BigInt(adjusted) !== 0n ? adjusted : ptr;
  }

  endCatch(): void {
    const inst = this.#inst;
    const setThrew = inst.module.exportType('setThrew');
    inst.call('setThrew', [setThrew?.params[0] === 'i64' ? 0n : 0, 0]);
    const ptr = this.caught.pop();
    if (ptr !== undefined) inst.call('__cxa_decrement_exception_refcount', [this.#ptr(ptr)]);
    this.last = this.#ptr(0);
  }

  rethrow(): never {
    const ptr = this.caught.pop();
    if (ptr === undefined) throw new AoError('__cxa_rethrow: no exception is being handled', { status: 500 });
    if (!this.#byte(this.#field(ptr, 'rethrown'))) {
      this.caught.push(ptr);
      this.#byte(this.#field(ptr, 'rethrown'), 1);
      this.#byte(this.#field(ptr, 'caught'), 0);
      this.uncaught++;
    }
    this.last = ptr;
    throw new EmscriptenUnwind('exception', ptr);
  }

  resume(ptr: WasmValue): never {
    if (BigInt(this.last) === 0n) this.last = ptr;
    throw new EmscriptenUnwind('exception', this.last);
  }
}

/** Import functions of the emscripten exception/longjmp protocol that the module declares. */
export function emscriptenImports(
  names: readonly string[],
  getInstance: () => WasmInstance,
): Record<string, (...args: WasmValue[]) => WasmValue | undefined> {
  const out: Record<string, (...args: WasmValue[]) => WasmValue | undefined> = {};
  const cxa = new CxaRuntime(getInstance);
  for (const n of names) {
    if (n.startsWith('invoke_')) out[n] = invokeImport(n, getInstance);
    else if (n === '_emscripten_throw_longjmp') {
      out[n] = () => {
        throw new EmscriptenUnwind('longjmp');
      };
    } else if (n === '__cxa_throw') out[n] = (ptr, type, destructor) => cxa.throw(ptr!, type!, destructor!);
    else if (n.startsWith('__cxa_find_matching_catch_')) out[n] = (...types) => cxa.findMatchingCatch(types);
    else if (n === '__cxa_begin_catch') out[n] = (ptr) => cxa.beginCatch(ptr!);
    else if (n === '__cxa_end_catch') {
      out[n] = () => {
        cxa.endCatch();
        return undefined;
      };
    }
    else if (n === '__cxa_rethrow') out[n] = () => cxa.rethrow();
    else if (n === '__resumeException') out[n] = (ptr) => cxa.resume(ptr!);
    else if (n === '__cxa_uncaught_exceptions') out[n] = () => cxa.uncaught;
    else if (n === 'llvm_eh_typeid_for') out[n] = (type) => Number(BigInt.asIntN(32, BigInt(type!)));
  }
  return out;
}
