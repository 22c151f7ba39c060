/**
 * `startServer` for programs (the `hb-runtimes serve` command in code). fastify is loaded on the
 * first call, so importing the package does not load the HTTP stack.
 */
import type { ServeHandle, ServeOptions } from './app';

export type { ServeHandle, ServeOptions } from './app';

/** Starts `hb-runtimes serve` in this process (options as docs/serve.md). */
export function startServer(opts: ServeOptions): Promise<ServeHandle> {
  return (require('./app') as typeof import('./app')).startServer(opts);
}
