/**
 * The entry of a pool worker thread: the AO processes pinned to this worker (by ID), each an
 * `AosProcess`, driven by the pool's requests, one at a time and in the order they arrive.
 * Guest code runs here, never on the pool's thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { AoError } from '../errors';
import { AosProcess } from './aos';
import { serializeError, transferable, type Reply, type Request } from './protocol';

const port = parentPort;
if (!port) throw new Error('hb-runtimes pool worker: must run in a worker thread');

const processes = new Map<string, AosProcess>();
/** Shared with the pool: requests with an ID up to this one were withdrawn before they started. */
const cancel: Int32Array | undefined = (workerData as { cancel?: Int32Array } | undefined)?.cancel;
/** Set by the `crash` testing aid: how the next compute ends this worker. */
let crashNext: 'exit' | 'throw' | 'hang' | undefined;

function crash(how: 'exit' | 'throw' | 'hang'): Promise<never> {
  if (how === 'exit') process.exit(3);
  if (how === 'hang') for (;;); // stopped only by the watchdog (terminate() ends a JS loop)
  process.nextTick(() => {
    throw new Error('hb-runtimes pool worker: crash requested (testing aid)');
  });
  return new Promise<never>(() => undefined);
}

function processOf(pid: string): AosProcess {
  const p = processes.get(pid);
  if (!p) throw new AoError(`process ${pid} is not open on this worker`, { status: 404, code: 'ERR_NOT_FOUND' });
  return p;
}

async function handle(req: Request): Promise<{ value: unknown; transfer?: ArrayBuffer[] }> {
  switch (req.op) {
    case 'open': {
      processes.get(req.pid)?.dispose();
      processes.delete(req.pid);
      const p = await AosProcess.open(req.def, { checkpoint: req.checkpoint, log: req.log, checkpointEvery: req.checkpointEvery, detached: true });
      processes.set(req.pid, p);
      // The state opened, as the new checkpoint (moved, not copied: this side keeps none).
      const checkpoint = p.rebase();
      return { value: { checkpoint }, transfer: transferable(checkpoint) };
    }
    case 'compute': {
      if (crashNext) return crash(crashNext);
      const reply = await processOf(req.pid).compute(req.a);
      if (reply.reopen) processes.delete(req.pid);
      return { value: reply, transfer: transferable(reply.checkpoint) };
    }
    case 'dryRun':
      return { value: await processOf(req.pid).dryRun(req.a) };
    case 'snapshot': {
      if (crashNext) return crash(crashNext);
      const bytes = processOf(req.pid).snapshot();
      return { value: bytes, transfer: transferable(bytes) };
    }
    case 'close':
      processes.get(req.pid)?.dispose();
      processes.delete(req.pid);
      return { value: null };
    case 'crash':
      crashNext = req.how;
      return { value: null };
  }
}

function send(reply: Reply, transfer: ArrayBuffer[] = []): void {
  try {
    port!.postMessage(reply, transfer);
  } catch {
    port!.postMessage(reply);
  }
}

// One request at a time, in arrival order (the pool sends one at a time anyway).
let chain: Promise<void> = Promise.resolve();
port.on('message', (msg: { id: number; req: Request }) => {
  if (msg.req.op === 'crash') {
    crashNext = msg.req.how;
    return;
  }
  chain = chain.then(async () => {
    if (cancel && msg.id <= Atomics.load(cancel, 0)) return;
    try {
      const { value, transfer } = await handle(msg.req);
      send({ id: msg.id, ok: true, value }, transfer);
    } catch (e) {
      send({ id: msg.id, ok: false, error: serializeError(e) });
    }
  });
});
