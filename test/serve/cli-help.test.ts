/**
 * `hb-runtimes serve --help` and the options table of docs/serve.md list the same flags with the
 * same defaults, so neither drifts from the other.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/fixtures';

/** `--flag` -> its help text on one line. */
function helpOptions(): Map<string, string> {
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'hb-runtimes.js'), 'serve', '--help'], { encoding: 'utf8' });
  expect(r.status).toBe(0);
  const out = new Map<string, string>();
  let current: string | undefined;
  for (const line of r.stdout.split('\n')) {
    const m = /^ {2}(--[a-z0-9-]+)(.*)$/.exec(line);
    if (m) {
      current = m[1];
      out.set(current, m[2].trim());
    } else if (current && /^ {10,}\S/.test(line)) {
      out.set(current, `${out.get(current)} ${line.trim()}`);
    } else {
      current = undefined;
    }
  }
  out.delete('--help');
  return out;
}

/** `--flag` -> its default column in docs/serve.md's options table. */
function documentedOptions(): Map<string, string> {
  const doc = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'serve.md'), 'utf8');
  const section = doc.slice(doc.indexOf('### Options'), doc.indexOf('## Metrics and backpressure'));
  const out = new Map<string, string>();
  for (const line of section.split('\n')) {
    const m = /^\| `(--[a-z0-9-]+)[^`]*` \| (.*?) \| .* \|$/.exec(line);
    if (m) out.set(m[1], m[2] === '—' ? '' : m[2].replace(/^`|`$/g, ''));
  }
  return out;
}

it('serve --help and docs/serve.md list the same flags with the same defaults', () => {
  const help = helpOptions();
  const doc = documentedOptions();
  expect(help.size).toBeGreaterThan(20);
  expect([...doc.keys()].sort()).toEqual([...help.keys()].sort());
  for (const [flag, dflt] of doc) {
    const text = help.get(flag)!.replace(/\s+/g, ' ');
    if (dflt === '') expect(text, flag).not.toMatch(/default/);
    else expect(text.includes(`(default: "${dflt}")`) || text.includes(`default: ${dflt}`), `${flag}: '${text}' should give the default '${dflt}'`).toBe(true);
  }
});
