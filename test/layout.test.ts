/** The shape of src/: no import cycles, and AO-Core (src/ao) knows no device. */
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/fixtures';
import { importCycles, importGraph, type ImportEdge } from './helpers/import-graph';

const SRC = path.join(REPO_ROOT, 'src');

describe('the import graph of src/', () => {
  const graph = importGraph(SRC);

  it('is read from every source file (the check cannot pass on an empty graph)', () => {
    expect(graph.get(path.join('ao', 'resolve.ts'))!.map((e) => e.to)).toContain(path.join('ao', 'registry.ts'));
    expect(graph.get(path.join('devices', 'index.ts'))!.map((e) => e.to)).toContain(path.join('ao', 'registry.ts'));
    expect(graph.size).toBeGreaterThan(40);
  });

  it('finds a cycle when there is one', () => {
    const g = new Map<string, ImportEdge[]>([
      ['a.ts', [{ to: 'b.ts', typeOnly: false }]],
      ['b.ts', [{ to: 'c.ts', typeOnly: false }]],
      ['c.ts', [{ to: 'a.ts', typeOnly: false }, { to: 'd.ts', typeOnly: false }]],
      ['d.ts', [{ to: 'a.ts', typeOnly: true }]],
    ]);
    expect(importCycles(g)).toEqual([['a.ts', 'b.ts', 'c.ts']]);
  });

  it('has no import cycles', () => {
    expect(importCycles(graph)).toEqual([]);
  });

  it('src/ao imports nothing from src/devices, not even types', () => {
    const offending: string[] = [];
    for (const [file, edges] of graph) {
      if (!file.startsWith(`ao${path.sep}`)) continue;
      for (const e of edges) if (e.to.startsWith(`devices${path.sep}`)) offending.push(`${file} -> ${e.to}`);
    }
    expect(offending).toEqual([]);
  });
});
