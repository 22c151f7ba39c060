/**
 * WeaveDrive: Arweave data as files under `/data/<tx id>`, read through AOS 2's asynchronous
 * imports (`__asyncjs__weavedrive_open/read/close`, suspended and resumed with Asyncify).
 *
 * The guest's `fopen('/data/<id>')` asks `open`: when the id is admissible, a file of the
 * transaction's size (a HEAD request to the gateway) is created in the file system and opened,
 * and its descriptor returned (0 otherwise, which the guest sees as a failed open). `fseek` and
 * `ftell` work on that descriptor as on any file; `fread` asks `read` for `length` bytes at the
 * stream's position, fetched with a `Range` request and written into guest memory. The Arweave
 * client is injectable (`fetch`), and nothing is admissible unless the options say so.
 */
import type { EmFS } from './fs';
import type { Runtime } from './runtime';

export interface WeaveDriveOptions {
  /** Gateway base URL (default `https://arweave.net`). */
  gateway?: string;
  /** The HTTP client (default: the global `fetch`). */
  fetch?: (url: string, init?: { method?: string; headers?: Record<string, string> }) => Promise<{ ok: boolean; status: number; headers: { get(name: string): string | null }; arrayBuffer(): Promise<ArrayBuffer> }>;
  /** Transaction ids the process may read, or a predicate; default: none. */
  admissible?: readonly string[] | ((id: string) => boolean | Promise<boolean>);
}

export interface WeaveDriveHooks {
  open(filename: string, mode: number): Promise<unknown>;
  read(fd: number, dst: number, length: number): Promise<unknown>;
  close(fd: number): Promise<unknown>;
}

const ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Hooks doing nothing, as ao-loader's runtime behaves without a WeaveDrive: every open fails. */
export const NO_DRIVE: WeaveDriveHooks = {
  open: async () => null,
  read: async () => {
    throw new TypeError('WeaveDrive is not configured');
  },
  close: async () => {
    throw new TypeError('WeaveDrive is not configured');
  },
};

export function weaveDrive(opts: WeaveDriveOptions, rt: Runtime, fs: EmFS): WeaveDriveHooks {
  const gateway = (opts.gateway ?? 'https://arweave.net').replace(/\/+$/, '');
  const fetcher = opts.fetch ?? (globalThis.fetch as unknown as NonNullable<WeaveDriveOptions['fetch']>);
  const remote = new Map<number, string>(); // fd -> tx id
  const admissible = async (id: string): Promise<boolean> => {
    const a = opts.admissible;
    if (!a) return false;
    return typeof a === 'function' ? Boolean(await a(id)) : a.includes(id);
  };

  return {
    async open(filename) {
      const [, category, id, ...rest] = filename.split('/');
      if (category !== 'data' || !id || rest.length || !ID.test(id)) return 0;
      for (const s of fs.streams) if (s && remote.get(s.fd) === id) return s.fd;
      if (!(await admissible(id))) return 0;
      const head = await fetcher(`${gateway}/${id}`, { method: 'HEAD' });
      if (!head.ok) return 0;
      const size = Number(head.headers.get('content-length') ?? NaN);
      if (!Number.isSafeInteger(size) || size < 0) return 0;
      const path = `/data/${id}`;
      const stream = fs.openRemote(path, size);
      remote.set(stream.fd, id);
      return stream.fd;
    },

    async read(fd, dst, length) {
      const id = remote.get(fd);
      const s = fs.streams[fd];
      if (!id || !s) return 0;
      const end = Math.min(s.node.size, s.position + length);
      if (end <= s.position) return 0;
      const res = await fetcher(`${gateway}/${id}`, { headers: { Range: `bytes=${s.position}-${end - 1}` } });
      if (!res.ok) return 0;
      let bytes = new Uint8Array(await res.arrayBuffer());
      if (res.status === 200) bytes = bytes.subarray(s.position, end); // a gateway that ignores Range
      bytes = bytes.subarray(0, end - s.position);
      rt.write(dst, bytes);
      s.position += bytes.length;
      return bytes.length;
    },

    async close(fd) {
      if (remote.delete(fd) && fs.streams[fd]) fs.close(fd);
      return 0;
    },
  };
}
