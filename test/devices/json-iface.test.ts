/** json-iface@1.0 driving AOS (aos-2-pure-xs) in a stack, through resolve (SPEC §6, §10.4). */
import { beforeAll, describe, expect, it } from 'vitest';
import { aosWasmStack, jsonStruct } from '../../src/devices';
import { resolve, type Message } from '../../src/ao';
import { cacheWrite } from '../../src/ao/cache';
import { wasm } from '../../src/devices/wasm-64';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { wat } from '../helpers/wat';

/** The built-in registry has wasm-64@1.0 and json-iface@1.0. */
const opts = {};

async function aosProcess(): Promise<Record<string, unknown>> {
  const image = await cacheWrite(sharedFixture('aos-2-pure-xs.wasm'));
  return aosWasmStack({ image, owner: 'FOOBAR', name: 'Thomas', authority: 'FOOBAR', id: 'AOS' });
}

function evalReq(code: string, extra: Record<string, unknown> = {}) {
  return { path: 'compute', 'block-height': 1, body: { action: 'Eval', data: code, target: 'AOS', owner: 'FOOBAR', from: 'FOOBAR', ...extra } };
}

describeShared('json-iface@1.0 with aos-2-pure-xs', () => {
  it('evaluates `return 1+1` to results/data "2"', async () => {
    const p = await resolve(await aosProcess(), 'init', opts);
    const r = await resolve(p, evalReq('return 1+1'), opts);
    expect(await resolve(r, 'results/data', opts)).toBe('2');
    expect(await resolve(r, 'results/wasm/type', opts)).toBe('ok');
  });

  it('puts a Send in results/outbox/1 with its tags as keys', async () => {
    const p = await resolve(await aosProcess(), 'init', opts);
    const r = await resolve(p, evalReq('Send({Target = "Foo", Data = "Bar", Action = "Ping"}); return 5'), opts);
    expect(await resolve(r, 'results/data', opts)).toBe('5');
    const out = await resolve(r, 'results/outbox/1', opts);
    expect(out).toMatchObject({ target: 'Foo', data: 'Bar', action: 'Ping', type: 'Message', 'from-process': 'AOS' });
  });

  it('reports a Lua error as results/data and results/error', async () => {
    const p = await resolve(await aosProcess(), 'init', opts);
    const r = await resolve(p, evalReq('error("boom")'), opts);
    expect(await resolve(r, 'results/error', opts)).toMatch(/\[string "aos"\]:1: boom$/);
  });

  it('keeps state across messages and through a snapshot into a fresh process', async () => {
    const p = await resolve(await aosProcess(), 'init', opts);
    const r1 = await resolve(p, evalReq('X = 42'), opts);
    const snap = await resolve(r1, 'snapshot', opts);
    expect(snap.body).toBeInstanceOf(Uint8Array);
    // As process@1.0 does after loading a snapshot: normalize first, then compute.
    const fresh = await resolve({ ...(await aosProcess()), snapshot: snap }, 'normalize', opts);
    const r2 = await resolve(fresh, evalReq('return X'), opts);
    expect(await resolve(r2, 'results/data', opts)).toBe('42');
    expect(wasm.instance(r2)).not.toBe(wasm.instance(r1));
  });

  it('AOS sees a signed ANS-104 message as HyperBEAM hands it over: original tag case, From-Process, PublicKey, Data null', async () => {
    const signer = 'SignerAddress-0123456789abcdefghijklmnopqrs';
    let p = await resolve(aosWasmStack({ image: await cacheWrite(sharedFixture('aos-2-pure-xs.wasm')), owner: signer, authority: signer, id: 'AOS' }), 'init', opts);
    const ev = async (code: string) => {
      p = await resolve(p, { path: 'compute', 'block-height': 1, body: { action: 'Eval', data: code, target: 'AOS', owner: signer } }, opts);
      return p.results.data;
    };
    expect(await ev('Handlers.add("rec", function(m) return m.Action == "Record" end, function(m) Seen = m end) return "ok"')).toBe('ok');
    const signed = ans104Message({ action: 'Record', target: 'AOS', data: Buffer.from([0xff, 0xfe]), 'from-process': 'OtherProcess-0123456789abcdefghijklmnopqrs' });
    const c = (signed.commitments as Message)[ANS104_ID] as Message;
    c['original-tags'] = { 1: { name: 'X-Weird-CASE', value: 'v' }, 2: { name: 'Action', value: 'Record' } };
    p = await resolve(p, { path: 'compute', 'block-height': 2, body: signed }, opts);
    const seen = JSON.parse(await ev("return require('json').encode({ weird = Seen['X-Weird-CASE'], lower = Seen['x-weird-case'], from = Seen.From, pk = Seen.PublicKey, data = tostring(Seen.Data) })"));
    expect(seen).toEqual({ pk: 'T3duZXJQdWJsaWNLZXk', weird: 'v', from: 'OtherProcess-0123456789abcdefghijklmnopqrs', data: 'nil' });
  });

  it('does not grow guest memory per message (one reused scratch buffer)', async () => {
    let p = await resolve(await aosProcess(), 'init', opts);
    p = await resolve(p, evalReq('return 1'), opts);
    const size = wasm.instance(p)!.memory.size;
    for (let i = 0; i < 200; i++) p = await resolve(p, evalReq(`return ${i}`), opts);
    expect(await resolve(p, 'results/data', opts)).toBe('199');
    expect(wasm.instance(p)!.memory.size).toBe(size);
  });
});

/**
 * A message as HyperBEAM's dev_ans104_from decodes a signed ANS-104 data item: the tags as
 * lower-case keys, and one commitment holding the committer, the signature, `keyid:
 * publickey:<owner>` and the item's `original-tags` (a numbered message, order and case kept).
 */
const ANS104_ID = 'IdOfTheDataItem-0123456789abcdefghijklmnopq';
const ans104Message = (extra: Message = {}): Message => ({
  action: 'Eval',
  'x-weird-case': 'v',
  data: 'return 1',
  target: 'ProcessId-0123456789abcdefghijklmnopqrstuvw',
  commitments: {
    [ANS104_ID]: {
      'commitment-device': 'ans104@1.0',
      committer: 'SignerAddress-0123456789abcdefghijklmnopqrs',
      committed: ['action', 'data', 'target', 'x-weird-case'],
      signature: 'c2lnbmF0dXJl',
      keyid: 'publickey:T3duZXJQdWJsaWNLZXk',
      type: 'rsa-pss-sha256',
      bundle: 'false',
      'original-tags': { 1: { name: 'X-Weird-CASE', value: 'v' }, 2: { name: 'Action', value: 'Eval' }, 3: { name: 'Data-Protocol', value: 'ao' } },
    },
  },
  ...extra,
});

describe('jsonStruct: the AO JSON form, as HyperBEAM dev_json_iface writes it now', () => {
  it('takes Tags from the ANS-104 original-tags (order and case kept), Owner/Signature/PublicKey from the commitment', () => {
    expect(jsonStruct({ id: ANS104_ID, ...ans104Message() })).toEqual({
      Id: ANS104_ID,
      Anchor: '',
      Owner: 'SignerAddress-0123456789abcdefghijklmnopqrs',
      From: 'SignerAddress-0123456789abcdefghijklmnopqrs',
      Tags: [
        { name: 'X-Weird-CASE', value: 'v' },
        { name: 'Action', value: 'Eval' },
        { name: 'Data-Protocol', value: 'ao' },
      ],
      Target: 'ProcessId-0123456789abcdefghijklmnopqrstuvw',
      Data: 'return 1',
      Signature: 'c2lnbmF0dXJl',
      PublicKey: 'T3duZXJQdWJsaWNLZXk',
    });
  });

  it('From is from-process when present, otherwise the owner', () => {
    expect(jsonStruct(ans104Message({ 'from-process': 'OtherProcess-0123456789abcdefghijklmnopqrs' })).From).toBe('OtherProcess-0123456789abcdefghijklmnopqrs');
    expect(jsonStruct({ owner: 'Owner-0123456789abcdefghijklmnopqrstuvwxyz01', action: 'Eval' }).From).toBe('Owner-0123456789abcdefghijklmnopqrstuvwxyz01');
  });

  it('Data is null when it is bytes that are not text, the text when they are', () => {
    expect(jsonStruct(ans104Message({ data: Buffer.from([0xff, 0xfe, 0x00]) })).Data).toBeNull();
    expect(jsonStruct(ans104Message({ data: Buffer.from('héllo') })).Data).toBe('héllo');
    expect(jsonStruct(ans104Message({ data: Buffer.from('\uFEFFhi') })).Data).toBe('\uFEFFhi'); // a leading BOM is kept, as HyperBEAM passes the bytes
    expect(jsonStruct({ action: 'Eval' }).Data).toBe('');
  });

  it('without an ANS-104 commitment: header-case tags in key order, and no PublicKey', () => {
    const httpsig: Message = {
      action: 'Eval',
      'block-height': 3,
      data: 'x',
      commitments: { 'Commitment-0123456789abcdefghijklmnopqrstuvwx': { 'commitment-device': 'httpsig@1.0', committer: 'Addr-0123456789abcdefghijklmnopqrstuvwxyz012', signature: 'sig' } },
    };
    expect(jsonStruct(httpsig)).toMatchObject({
      Owner: 'Addr-0123456789abcdefghijklmnopqrstuvwxyz012',
      Tags: [
        { name: 'Action', value: 'Eval' },
        { name: 'Block-Height', value: '3' },
      ],
      Signature: 'sig',
      PublicKey: '',
    });
  });
});

/** A guest whose `handle` answers `response` whatever it is given (a bump allocator for the inputs). */
async function answering(response: string): Promise<Message> {
  const bytes = Buffer.from(`${response}\0`, 'utf8');
  const escaped = [...bytes].map((b) => `\\${b.toString(16).padStart(2, '0')}`).join('');
  const image = await wat(`(module
    (memory (export "memory") 2)
    (global $next (mut i32) (i32.const 4096))
    (data (i32.const 16) "${escaped}")
    (func (export "malloc") (param $n i32) (result i32) (local $p i32)
      (local.set $p (global.get $next)) (global.set $next (i32.add (global.get $next) (local.get $n))) (local.get $p))
    (func (export "handle") (param i32 i32) (result i32) (i32.const 16)))`);
  return resolve(aosWasmStack({ image: await cacheWrite(image), id: 'P' }), 'init', opts);
}

describe('json-iface@1.0 collects results as HyperBEAM normalize_results does', () => {
  let images: Record<string, Message>;
  beforeAll(async () => {
    images = {
      noOutput: await answering('{"ok":true,"response":{"Data":"from Data","Messages":[{"Target":"T","Data":"d","Tags":[{"name":"Action","value":"Ping"}]}]}}'),
      stringOutput: await answering('{"ok":true,"response":{"Output":"sent pong reply","Messages":[{"Target":"T"}]}}'),
      patches: await answering('{"ok":true,"response":{"Output":{"data":"p"},"patches":[{"Tags":[{"name":"Balance","value":"10"},{"name":"Gone","value":"__ao-unset__"}],"Target":"ignored"}]}}'),
    };
  });
  const compute = (m: Message) => resolve(m, { path: 'compute', body: { action: 'Eval', data: 'x' } }, opts);

  it('data from the response Data when there is no Output, messages as usual', async () => {
    const r = await compute(images.noOutput);
    expect(r.results.data).toBe('from Data');
    expect(r.results.outbox['1']).toMatchObject({ target: 'T', data: 'd', action: 'Ping', 'from-process': 'P' });
  });

  it('an Output that is not an object gives empty results (test builds answer a bare string)', async () => {
    const r = await compute(images.stringOutput);
    expect([r.results.data, r.results.outbox, r.results.patches]).toEqual(['', {}, []]);
  });

  it('results carry patches: each patch its tags as a map, names as written', async () => {
    const r = await compute(images.patches);
    expect(r.results.patches).toEqual([{ Balance: '10', Gone: '__ao-unset__' }]);
  });
});
