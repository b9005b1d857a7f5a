// import-graph.ts — the imports between the areas of src/ and cmd/, checked against the
// layers that ARCHITECTURE.md declares (its ```layers block). Used by layering.test.ts.
//
// An area is `cmd`, `src/index.ts` (the package's public surface) or `src/<folder>`. Every
// relative import is an edge: static imports, `import type`, `export … from` and
// `import('literal')` alike, read by TypeScript's own pre-processor rather than a regular
// expression, so an import split over lines or inside a comment is judged as the compiler
// sees it. Package imports (no leading dot) are not edges; src/raft's purity rule in
// eslint.config.js covers those.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, posix, relative } from 'node:path';
import ts from 'typescript';

/** Layers is the declared order: rows[0] is the highest rank. */
export interface Layers {
  readonly rows: readonly (readonly string[])[];
}

/** ImportEdge is one relative import of one file. */
export interface ImportEdge {
  /** The importing file, relative to the project root with forward slashes. */
  readonly from: string;
  /** The imported file, resolved the same way. */
  readonly to: string;
  readonly specifier: string;
  /** 1-based line of the specifier in the importing file. */
  readonly line: number;
}

const LAYERS_BLOCK = /^```layers\n([\s\S]*?)^```/m;

/** parseLayers reads the ```layers block of ARCHITECTURE.md; one row per line, `#` starts a comment. */
export function parseLayers(markdown: string): Layers {
  const block = LAYERS_BLOCK.exec(markdown);
  if (block === null) throw new Error('ARCHITECTURE.md has no ```layers block');
  const rows: string[][] = [];
  const seen = new Set<string>();
  for (const rawLine of (block[1] ?? '').split('\n')) {
    const line = rawLine.replace(/#.*/, '').trim();
    if (line === '') continue;
    const row = line.split(/\s+/);
    for (const area of row) {
      if (seen.has(area)) throw new Error(`ARCHITECTURE.md's layers list ${area} twice`);
      seen.add(area);
    }
    rows.push(row);
  }
  if (rows.length === 0) throw new Error("ARCHITECTURE.md's ```layers block lists no area");
  return { rows };
}

/** areaOf names the area a project file belongs to, or undefined outside src/ and cmd/. */
export function areaOf(path: string): string | undefined {
  if (path.startsWith('cmd/')) return 'cmd';
  if (path === 'src/index.ts') return 'src/index.ts';
  const match = /^src\/([^/]+)\//.exec(path);
  if (match !== null) return `src/${match[1] ?? ''}`;
  if (path.startsWith('src/')) return path; // a loose file in src/: an area of its own, unlisted
  return undefined;
}

/** importEdges lists the relative imports of each file in `files` (path → source text). */
export function importEdges(files: ReadonlyMap<string, string>): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const [from, source] of files) {
    const info = ts.preProcessFile(source, true, true);
    for (const imported of info.importedFiles) {
      const specifier = imported.fileName;
      if (!specifier.startsWith('./') && !specifier.startsWith('../')) continue;
      const to = posix.normalize(posix.join(posix.dirname(from), specifier));
      const line = source.slice(0, imported.pos).split('\n').length;
      edges.push({ from, to, specifier, line });
    }
  }
  return edges;
}

function rankOf(layers: Layers): Map<string, number> {
  const ranks = new Map<string, number>();
  layers.rows.forEach((row, index) => {
    for (const area of row) ranks.set(area, index);
  });
  return ranks;
}

/** areaCycles lists every cycle of the area graph (its strongly connected components of two or more areas). */
export function areaCycles(edges: readonly ImportEdge[]): string[][] {
  const graph = new Map<string, Set<string>>();
  for (const edge of edges) {
    const from = areaOf(edge.from);
    const to = areaOf(edge.to);
    if (from === undefined || to === undefined || from === to) continue;
    if (!graph.has(from)) graph.set(from, new Set());
    if (!graph.has(to)) graph.set(to, new Set());
    graph.get(from)?.add(to);
  }
  // Tarjan's algorithm; the graph has a dozen nodes, so recursion depth is no concern.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  let next = 0;
  const visit = (node: string): void => {
    index.set(node, next);
    low.set(node, next);
    next += 1;
    stack.push(node);
    onStack.add(node);
    for (const target of graph.get(node) ?? []) {
      if (!index.has(target)) {
        visit(target);
        low.set(node, Math.min(low.get(node) ?? 0, low.get(target) ?? 0));
      } else if (onStack.has(target)) {
        low.set(node, Math.min(low.get(node) ?? 0, index.get(target) ?? 0));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string | undefined;
      do {
        member = stack.pop();
        if (member === undefined) break;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1) cycles.push(component.sort());
    }
  };
  for (const node of [...graph.keys()].sort()) if (!index.has(node)) visit(node);
  return cycles;
}

/**
 * layeringViolations returns one sentence per broken rule, empty when the imports keep the
 * declared shape: a file imports its own area or an area on a lower row; every area of src/
 * and cmd/ is listed; nothing in src/ or cmd/ imports test/, bench/ or scripts/; no cycle
 * between areas.
 */
export function layeringViolations(layers: Layers, files: ReadonlyMap<string, string>): string[] {
  const ranks = rankOf(layers);
  const violations: string[] = [];
  const unlisted = new Set<string>();
  for (const path of files.keys()) {
    const area = areaOf(path);
    if (area !== undefined && !ranks.has(area)) unlisted.add(area);
  }
  for (const area of [...unlisted].sort()) {
    violations.push(`${area} is not placed in ARCHITECTURE.md's layers: add it to the row where it belongs`);
  }
  const edges = importEdges(files);
  for (const edge of edges) {
    const fromArea = areaOf(edge.from);
    if (fromArea === undefined) continue;
    const toArea = areaOf(edge.to);
    const where = `${edge.from}:${edge.line} imports '${edge.specifier}'`;
    if (toArea === undefined) {
      violations.push(`${where}, outside src/ and cmd/ (${edge.to}): shipped code may not depend on tests, benchmarks or scripts`);
      continue;
    }
    if (toArea === fromArea) continue;
    const fromRank = ranks.get(fromArea);
    const toRank = ranks.get(toArea);
    if (fromRank === undefined || toRank === undefined) continue; // reported as unlisted above
    if (toRank === fromRank) {
      violations.push(`${where}: ${fromArea} and ${toArea} share a row in ARCHITECTURE.md's layers, so neither may import the other`);
    } else if (toRank < fromRank) {
      violations.push(`${where}: ${toArea} is above ${fromArea} in ARCHITECTURE.md's layers; imports point down`);
    }
  }
  for (const cycle of areaCycles(edges)) violations.push(`the areas ${cycle.join(', ')} import each other in a cycle`);
  return violations;
}

/** projectSources reads every .ts and .js file under src/ and cmd/ of the project at `root`. */
export function projectSources(root: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (directory: string): void => {
    for (const name of readdirSync(directory).sort()) {
      const path = join(directory, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.(ts|js|mjs)$/.test(name) && !name.endsWith('.d.ts')) {
        files.set(relative(root, path).split('\\').join('/'), readFileSync(path, 'utf8'));
      }
    }
  };
  for (const top of ['src', 'cmd']) walk(join(root, top));
  return files;
}

/** projectRoot is the repository's root folder (this file is test/lint/import-graph.ts). */
export const projectRoot = dirname(dirname(dirname(new URL(import.meta.url).pathname)));
