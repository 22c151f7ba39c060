/**
 * lua@5.3a snapshots are exact (decision 7): a process run straight through and the same process
 * restored into a new VM after every message give identical outputs, including `pairs` order over
 * large hash tables, `math.random`, and coroutines suspended between messages.
 */
import { describe, expect, it } from 'vitest';
import { resolve } from '../../src/ao';
import type { Message } from '../../src/ao';
import { aosLuaProcess, lua, rsaCommitment } from '../../src/devices/lua';
import { describeShared, sharedFixture } from '../helpers/fixtures';

const luaBase = (body: string): Message => ({ device: 'lua@5.3a', module: { 'content-type': 'application/lua', name: 'main.lua', body } });

/** Outputs of `step` for n = 1..count, optionally restoring into a new VM after every message. */
async function run(script: string, count: number, restoreEach: boolean): Promise<unknown[]> {
  const outs: unknown[] = [];
  let m = await lua.init(luaBase(script), {}, {});
  for (let n = 1; n <= count; n++) {
    m = await resolve(m, { path: 'step', n });
    outs.push(m.out);
    if (restoreEach) {
      const snap = await resolve(m, 'snapshot');
      const { priv: _priv, ...pub } = m;
      m = await lua.normalize({ ...pub, snapshot: snap }, {}, {});
    }
  }
  return outs;
}

describe('lua@5.3a exact snapshots', () => {
  it('keeps pairs order, table contents and math.random across restores', async () => {
    const SCRIPT = `
      T = T or {}
      function step(base, req)
        local n = req.n
        for i = 1, 200 do T["k" .. ((i * n) % 997)] = i * n end
        for i = 1, 50 do T["k" .. ((i * 7 * n) % 997)] = nil end
        T[n + 0.5] = n T[n] = true T[{}] = n
        local keys, sum = {}, 0
        for k, v in pairs(T) do if type(k) ~= "table" then keys[#keys + 1] = tostring(k) end if type(v) == "number" then sum = sum + v end end
        base.out = table.concat(keys, ",") .. "|" .. sum .. "|" .. math.random(1000000)
        return base
      end
    `;
    const straight = await run(SCRIPT, 8, false);
    expect(await run(SCRIPT, 8, true)).toEqual(straight);
    expect(new Set(straight).size).toBe(8);
  });

  it('resumes coroutines suspended between messages', async () => {
    const SCRIPT = `
      Gen = Gen or coroutine.create(function()
        local i = 0
        while true do
          i = i + 1
          local ok, v = pcall(function() return coroutine.yield(i * i) end)
          Seen = (Seen or "") .. tostring(v) .. ";"
        end
      end)
      Wrapped = Wrapped or coroutine.wrap(function() for w in ("alpha beta gamma delta epsilon zeta eta theta"):gmatch("%a+") do coroutine.yield(w) end end)
      function step(base, req)
        local _, sq = coroutine.resume(Gen, req.n)
        base.out = tostring(sq) .. ":" .. Wrapped() .. ":" .. (Seen or "")
        return base
      end
    `;
    const straight = await run(SCRIPT, 6, false);
    expect(straight[0]).toBe('1:alpha:');
    expect(straight[2]).toBe('9:gamma:2;3;');
    expect(await run(SCRIPT, 6, true)).toEqual(straight);
  });
});

describeShared('hyper-aos.lua restored after every message', () => {
  it('gives the same outputs as a straight run', async () => {
    const OWNER = 'owner-address-0123456789abcdefghijklmnopqrs';
    const commit = (id: string) => rsaCommitment(OWNER, id);
    const proc = aosLuaProcess(sharedFixture('hyper-aos.lua'), { owner: OWNER, id: 'process-commitment-0123456789abcdefghijklm', 'snapshot-interval': 1 });
    const codes = [
      'T = {} for i = 1, 300 do T["k" .. i] = i end return #T',
      'local s = {} for k in pairs(T) do s[#s + 1] = k end return table.concat(s, ",", 1, 20)',
      'Handlers.add("ping", function(m) return m.body.action == "Ping" end, function(m) Send({ Target = "P", Data = "pong" }) end) return "added"',
      'return math.random(1000000)',
    ];
    const bodies = codes.map((c, i) => ({ action: 'Eval', body: { 'content-type': 'application/lua', body: c }, commitments: commit(`message-commitment-${i}`) }));
    bodies.push({ action: 'Ping', commitments: commit('message-commitment-ping') } as never);
    const outputs = async (restore: boolean) => {
      let p = proc;
      const outs: unknown[] = [];
      for (const body of bodies) {
        p = await resolve(p, { path: 'schedule', body });
        p = await resolve(p, 'now');
        outs.push(JSON.stringify(p.results));
        if (restore) {
          const { priv: _priv, ...stored } = p; // no live VM: the next slot restores from the snapshot
          p = stored;
        }
      }
      return outs;
    };
    const straight = await outputs(false);
    expect(await outputs(true)).toEqual(straight);
  });
});
