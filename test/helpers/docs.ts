// The code blocks of README.md and docs/*.md, with the marker that says how each is checked.
//
// A marker is an HTML comment on the line right above the opening fence:
//   <!-- test: run SCENARIO/FILE -->     saved as FILE and run with node (in scenario order); must exit 0
//   <!-- test: file SCENARIO/FILE -->    saved as FILE for a scenario that a test drives (a server, a
//                                         shell session); the driver names the scenario with docScenario()
//   <!-- test: fragment -->              type-checked against dist/index.d.ts, not run
//   <!-- test: excerpt PATH[ PATH] -->   every line of the block is a line of one of these files
//   <!-- test: skip REASON -->           not run (a shell command that installs, a unit file...): says why
// JavaScript and TypeScript blocks must be run, file or fragment (all of them are type-checked too);
// every other block with a language must carry a marker; a plain ``` block (output) needs none.
import * as fs from 'node:fs';
import * as path from 'node:path';

export const ROOT = path.join(__dirname, '..', '..', '..');

export type Marker =
  | { kind: 'run' | 'file'; scenario: string; name: string }
  | { kind: 'fragment' }
  | { kind: 'excerpt'; paths: string[] }
  | { kind: 'skip'; reason: string };

export interface DocBlock {
  /** Where it is: `README.md:123` (the opening fence's line). */
  where: string;
  lang: string;
  code: string;
  marker: Marker | null;
  /** A marker comment that does not parse, for the test to report. */
  badMarker?: string;
}

export const CODE_LANGS = new Set(['js', 'mjs', 'cjs', 'javascript', 'ts', 'typescript']);

/** The Markdown files whose blocks are checked: README.md and docs/*.md. */
export function docFiles(): string[] {
  const docs = path.join(ROOT, 'docs');
  const extra = fs.existsSync(docs)
    ? fs
        .readdirSync(docs)
        .filter((f) => f.endsWith('.md'))
        .sort()
        .map((f) => path.join('docs', f))
    : [];
  return ['README.md', ...extra];
}

function parseMarker(text: string): Marker | null {
  const m = /^(run|file|fragment|excerpt|skip)(?:\s+(.*))?$/.exec(text.trim());
  if (!m) return null;
  const [, kind, rest = ''] = m;
  if (kind === 'fragment') return rest === '' ? { kind } : null;
  if (kind === 'skip') return rest.trim() === '' ? null : { kind, reason: rest.trim() };
  if (kind === 'excerpt') return rest.trim() === '' ? null : { kind, paths: rest.trim().split(/\s+/) };
  const f = /^([\w.-]+)\/([\w.-]+)$/.exec(rest.trim());
  return f ? { kind: kind as 'run' | 'file', scenario: f[1]!, name: f[2]! } : null;
}

/** Every fenced block of one Markdown file (relative to the repository root). */
export function blocksOf(file: string): DocBlock[] {
  const lines = fs.readFileSync(path.join(ROOT, file), 'utf8').split('\n');
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
    const above = lines[start - 1] ?? '';
    const comment = /^<!--\s*test:(.*?)-->\s*$/.exec(above);
    const block: DocBlock = { where: `${file}:${start + 1}`, lang: open[1]!, code: `${body.join('\n')}\n`, marker: null };
    if (comment) {
      block.marker = parseMarker(comment[1]!);
      if (!block.marker) block.badMarker = above;
    }
    blocks.push(block);
  }
  return blocks;
}

export function allBlocks(): DocBlock[] {
  return docFiles().flatMap(blocksOf);
}

/** The run/file blocks of one scenario, in document order. */
export function scenarioBlocks(scenario: string): Array<DocBlock & { marker: { kind: 'run' | 'file'; scenario: string; name: string } }> {
  return allBlocks().filter(
    (b): b is DocBlock & { marker: { kind: 'run' | 'file'; scenario: string; name: string } } =>
      (b.marker?.kind === 'run' || b.marker?.kind === 'file') && b.marker.scenario === scenario,
  );
}

/**
 * A directory where `import 'fdpass'` and `require('fdpass')` resolve to this checkout (a project
 * with fdpass installed: node_modules/fdpass links here).
 */
export function projectDir(dir: string): string {
  fs.mkdirSync(path.join(dir, 'node_modules'), { recursive: true });
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'fdpass'));
  return dir;
}

// Every `from` replaced by its `to` in one pass (a new port never gets replaced again).
function replaceAll(text: string, replace: Array<[string, string]>): string {
  if (replace.length === 0) return text;
  const to = new Map(replace);
  const any = new RegExp(replace.map(([from]) => from.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('|'), 'g');
  return text.replace(any, (m) => to.get(m)!);
}

/**
 * Writes a scenario's blocks into `dir` (made a project: see projectDir) under their names; returns
 * name → absolute path. Drivers of `file` scenarios call this with the scenario's name. `replace`
 * swaps literal text (a fixed port such as 8080, a /tmp path) for a free one, so the suite can run
 * next to others on one machine.
 */
export function docScenario(scenario: string, dir: string, replace: Array<[string, string]> = []): Record<string, string> {
  const blocks = scenarioBlocks(scenario);
  if (blocks.length === 0) throw new Error(`no block of the docs is marked for scenario '${scenario}'`);
  projectDir(dir);
  const files: Record<string, string> = {};
  for (const b of blocks) {
    const file = path.join(dir, b.marker.name);
    if (files[b.marker.name] !== undefined) throw new Error(`${b.where}: scenario ${scenario} has two blocks named ${b.marker.name}`);
    fs.writeFileSync(file, replaceAll(b.code, replace));
    files[b.marker.name] = file;
  }
  return files;
}

/**
 * The guide's app.mjs (scenario fdpass-run) answering `hello from PID worker SLOT`: its answer with the
 * FDPASS_WORKER that `fdpass run --workers` gives it, to see which worker served.
 */
export function workersApp(): string {
  const code = scenarioBlocks('fdpass-run').find((b) => b.marker.name === 'app.mjs')!.code;
  const body = `hello from \${process.pid}`; // in the app's source
  if (!code.includes(body)) throw new Error(`the guide's app.mjs no longer answers ${body}`);
  return code.replace(body, `${body} worker \${process.env.FDPASS_WORKER}`);
}
