/**
 * The gas counter of one loaded process (ao-loader's `Module.gas`): refilled before each
 * message, read back as `GasUsed`; past `limit` the guest stops with `Error('out of gas!')`.
 */

export const DEFAULT_GAS_LIMIT = 9e15;

export class Gas {
  used = 0;
  /** Reads the in-module counter, when the image is metered inside (wasm-meter). */
  read?: () => number;
  constructor(readonly limit: number) {}
  /** `used` from the in-module counter. */
  sync(): number {
    if (this.read) this.used = this.read();
    return this.used;
  }
  use(amount: number): void {
    this.used += amount;
    if (this.used > this.limit) throw new OutOfGas();
  }
  refill(): void {
    this.used = 0;
  }
}

/** `Error('out of gas!')`, as ao-loader throws it (a plain Error with that message). */
export class OutOfGas extends Error {
  constructor() {
    super('out of gas!');
    this.name = 'Error';
  }
}

/**
 * emscripten's `ExitStatus`, thrown when the guest calls `exit(status)`: like emscripten's, a
 * plain object (not an Error) with own `name`, `message` and `status`.
 */
export class ExitStatus {
  readonly name: string;
  readonly message: string;
  readonly status: number;
  constructor(status: number) {
    this.name = 'ExitStatus';
    this.message = `Program terminated with exit(${status})`;
    this.status = status;
  }
}
