/**
 * The import graph of src/ (relative imports between .ts files), read with the TypeScript
 * parser, and its cycles (strongly connected components with more than one file, or a file
 * importing itself). Type-only imports are kept apart: they vanish at compile time, so they
 * cannot form a cycle at run time.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';

export interface ImportEdge {
  to: string;
  typeOnly: boolean;
}

function tsFiles(dir: string, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) tsFiles(p, out);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

function target(from: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const base = path.resolve(path.dirname(from), spec);
  return [`${base}.ts`, path.join(base, 'index.ts')].find((c) => fs.existsSync(c));
}

/** file (relative to `root`) → the files it imports (relative to `root`). */
export function importGraph(root: string): Map<string, ImportEdge[]> {
  const graph = new Map<string, ImportEdge[]>();
  for (const file of tsFiles(root)) {
    const sf = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest);
    const edges: ImportEdge[] = [];
    const add = (spec: ts.Expression | undefined, typeOnly: boolean) => {
      if (spec === undefined || !ts.isStringLiteral(spec)) return;
      const to = target(file, spec.text);
      if (to !== undefined) edges.push({ to: path.relative(root, to), typeOnly });
    };
    for (const st of sf.statements) {
      if (ts.isImportDeclaration(st)) add(st.moduleSpecifier, st.importClause?.isTypeOnly === true);
      else if (ts.isExportDeclaration(st)) add(st.moduleSpecifier, st.isTypeOnly);
    }
    graph.set(path.relative(root, file), edges);
  }
  return graph;
}

/** The import cycles among run-time imports, each as its sorted list of files. */
export function importCycles(graph: Map<string, ImportEdge[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const { to, typeOnly } of graph.get(v) ?? []) {
      if (typeOnly) continue;
      if (!index.has(to)) {
        visit(to);
        low.set(v, Math.min(low.get(v)!, low.get(to)!));
      } else if (onStack.has(to)) {
        low.set(v, Math.min(low.get(v)!, index.get(to)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    const selfLoop = (graph.get(v) ?? []).some((e) => !e.typeOnly && e.to === v);
    if (scc.length > 1 || selfLoop) cycles.push(scc.sort());
  };
  for (const f of [...graph.keys()].sort()) if (!index.has(f)) visit(f);
  return cycles;
}
