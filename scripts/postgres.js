'use strict';
/**
 * A throwaway PostgreSQL server for the tests and benchmarks of the PostgreSQL store: Debian's
 * `postgresql` package (its `initdb` / `pg_ctl`, found on the PATH, in `pg_config --bindir` or
 * under /usr/lib/postgresql/<major>/bin; `.ci/run` installs the package when it is missing).
 * The cluster lives in a temporary directory, listens on 127.0.0.1 on a free port, runs without
 * fsync (the tests kill nodes, not the database), and is removed by `stop()`. As root, the server
 * runs as the `postgres` user (PostgreSQL refuses root).
 *
 * `HB_RUNTIMES_TEST_PG_URL=postgres://…` uses a server of your own instead (each caller gets a
 * fresh database in it).
 *
 *   node scripts/postgres.js            prints whether a server can be started, and where from
 */
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

function binDir() {
  if (process.env.HB_RUNTIMES_PG_BIN) return process.env.HB_RUNTIMES_PG_BIN;
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, 'initdb')) && fs.existsSync(path.join(dir, 'pg_ctl'))) return dir;
  }
  try {
    const d = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (fs.existsSync(path.join(d, 'initdb'))) return d;
  } catch {}
  const root = '/usr/lib/postgresql';
  if (fs.existsSync(root)) {
    const majors = fs.readdirSync(root).filter((m) => fs.existsSync(path.join(root, m, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
    if (majors.length) return path.join(root, majors[0], 'bin');
  }
  return undefined;
}

/** Why no server can be started here, or undefined when one can. */
function unavailable() {
  if (process.env.HB_RUNTIMES_TEST_PG_URL) return undefined;
  if (!binDir()) return 'PostgreSQL is not installed (no initdb/pg_ctl on the PATH or under /usr/lib/postgresql; `apt-get install postgresql`, or set HB_RUNTIMES_TEST_PG_URL)';
  if (process.getuid && process.getuid() === 0 && spawnSync('id', ['-u', 'postgres']).status !== 0) return 'running as root and there is no postgres user to run PostgreSQL as';
  return undefined;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

let dbCounter = 0;

/** A fresh database on `serverUrl` (for `HB_RUNTIMES_TEST_PG_URL`, or several users of one server). */
async function createDatabase(serverUrl) {
  const { Client } = require('pg');
  const name = `hb_test_${process.pid}_${Date.now().toString(36)}_${dbCounter++}`;
  const c = new Client({ connectionString: serverUrl });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/**
 * Starts a server; resolves to `{ url, serverUrl, database(), stop() }`: `url` is a fresh
 * database, `database()` makes another one.
 */
async function startTempPostgres() {
  const why = unavailable();
  if (why) throw new Error(why);
  if (process.env.HB_RUNTIMES_TEST_PG_URL) {
    const serverUrl = process.env.HB_RUNTIMES_TEST_PG_URL;
    return { serverUrl, url: await createDatabase(serverUrl), database: () => createDatabase(serverUrl), stop: async () => {} };
  }
  const bin = binDir();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-pg-'));
  const data = path.join(dir, 'data');
  const asRoot = process.getuid && process.getuid() === 0;
  const run = (cmd, args) => {
    const full = path.join(bin, cmd);
    const r = asRoot ? spawnSync('runuser', ['-u', 'postgres', '--', full, ...args], { encoding: 'utf8' }) : spawnSync(full, args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} failed (${r.status}): ${(r.stderr || r.stdout || r.error?.message || '').trim()}`);
    return r.stdout;
  };
  if (asRoot) {
    fs.chmodSync(dir, 0o755);
    execFileSync('chown', ['postgres:postgres', dir]);
  }
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C']);
  const port = await freePort();
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200`;
  run('pg_ctl', ['-D', data, '-o', opts, '-l', path.join(dir, 'log'), '-w', '-t', '60', 'start']);
  const serverUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
  return { serverUrl, url: await createDatabase(serverUrl), database: () => createDatabase(serverUrl), stop, dir };
}

module.exports = { startTempPostgres, unavailable, binDir };

if (require.main === module) {
  const why = unavailable();
  if (why) {
    console.log(`no: ${why}`);
    process.exitCode = 1;
  } else {
    console.log(`yes: ${process.env.HB_RUNTIMES_TEST_PG_URL ? 'HB_RUNTIMES_TEST_PG_URL' : binDir()}`);
  }
}
