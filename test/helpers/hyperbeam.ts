/**
 * Requests as a HyperBEAM node makes them of its compute unit (test/serve/hyperbeam.test.ts has
 * the sources each shape is taken from): JSON structs of messages, AOS-2 pages of one assignment,
 * processes with their schedule and hash chain.
 */
import { createHash } from 'node:crypto';
import { nextHashChain } from '../../src/serve/aos2';

/** A Lua process that counts the messages it computed: `<count>:<data>`. */
export const COUNTER = `count = count or 0
function compute(base, req)
  count = count + 1
  base.results = { output = { data = tostring(count) .. ':' .. tostring(req.body.data) }, outbox = {} }
  return base
end
`;
export const HB = 'hb'.padEnd(43, 'S'); // the HyperBEAM node's (scheduler's) address
export const OWNER = 'own'.padEnd(43, 'O');
export const id = (s: string) => createHash('sha256').update(s).digest('base64url');
export type Tag = { name: string; value: string };

/** dev_json_iface:message_to_json_struct/2 of a message. */
export function struct(Id: string, tags: Tag[], data: string | null, target = '') {
  return { Id, Anchor: '', Owner: OWNER, From: OWNER, Tags: tags, Target: target, Data: data, Signature: '', PublicKey: '' };
}

export interface Slot {
  slot: number;
  message: ReturnType<typeof struct>;
  timestamp: number;
  height: number;
  chain: string;
}

/** dev_scheduler_formats:assignments_to_aos2(ProcID, #{Slot => Assignment}, false, Opts): one edge. */
export function aos2(pid: string, s: Slot) {
  const keys: Record<string, string> = {
    'block-hash': Buffer.alloc(32, 7).toString('base64url'),
    'block-height': String(s.height),
    'block-timestamp': String(Math.floor(s.timestamp / 1000)),
    'data-protocol': 'ao',
    epoch: '0',
    'hash-chain': s.chain,
    path: 'compute',
    process: pid,
    slot: String(s.slot),
    timestamp: String(s.timestamp),
    variant: 'ao.N.1',
  };
  const header = (k: string) => k.replace(/(^|-)([a-z])/g, (_m, d: string, c: string) => d + c.toUpperCase());
  const assignment = {
    ...struct(id(`assignment ${pid} ${s.slot}`), Object.entries(keys).map(([k, v]) => ({ name: header(k), value: v })), ''),
    Owner: HB,
    From: HB,
  };
  return {
    page_info: { process: pid, has_next_page: false, timestamp: String(s.timestamp + 5), 'block-height': String(s.height), 'block-hash': keys['block-hash'] },
    edges: [{ cursor: s.slot, node: { message: s.message, assignment } }],
  };
}

/** A HyperBEAM process and its schedule, slot by slot (chain as dev_scheduler_server makes it). */
export function hbProcess(moduleId: string, seed: string, datas: string[], messageSeed = seed): { pid: string; slots: Slot[] } {
  const pid = id(`process ${seed}`);
  const procTags: Tag[] = [
    { name: 'Authority', value: OWNER },
    { name: 'Data-Protocol', value: 'ao' },
    { name: 'Device', value: 'process@1.0' },
    { name: 'Execution-Device', value: 'genesis-wasm@1.0' },
    { name: 'Module', value: moduleId },
    { name: 'Scheduler', value: HB },
    { name: 'Scheduler-Device', value: 'scheduler@1.0' },
    { name: 'Type', value: 'Process' },
    { name: 'Variant', value: 'ao.N.1' },
  ];
  const slots: Slot[] = [];
  let chain = '';
  const t0 = 1_760_000_000_000;
  const messages = [struct(pid, procTags, ''), ...datas.map((d, i) => struct(id(`${messageSeed} message ${i}`), [{ name: 'Action', value: 'Eval' }, { name: 'Type', value: 'Message' }], d, pid))];
  messages.forEach((message, slot) => {
    chain = nextHashChain(chain, message.Id);
    slots.push({ slot, message, timestamp: t0 + slot * 1000, height: 1_700_000 + slot, chain });
  });
  return { pid, slots };
}

export async function postJson(url: string, body: unknown): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, headers: res.headers, body: await res.json() };
}

/** POST /result/:slot?process-id= with the slot's AOS-2 page (dev_delegated_compute:do_compute/3). */
export const compute = (url: string, pid: string, s: Slot) => postJson(`${url}/result/${s.slot}?process-id=${pid}`, aos2(pid, s));

