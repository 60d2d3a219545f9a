// docs/API.md against the shipped declarations (dist/index.d.ts and the files it re-exports), so that
// the reference and the doc comments (what an editor shows) cannot drift apart:
// - every export, value or type, is documented, and nothing documented is not exported. Documented
//   means: named at the start of a code span in a heading of level 1 to 3 (`### \`sendFd(...)\``,
//   `### \`const x = await handoff.take(...)\``), or in the first cell of a table under "Types";
// - every public method of an exported class has a level-4 entry (`#### \`await channel.send(...)\``);
// - an entry's first sentence is its doc comment's first sentence (backticks and {@link} aside);
// - an entry of a call that takes options has a table of them (`| option | type | default | meaning |`)
//   whose names are exactly the properties of its options type in the .d.ts, then an `Errors:` and a
//   `Returns:` line.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './helpers/docs';
import { declarationOf, exportsOf, methodsOf, propertiesOf, type Declaration, type Param } from './helpers/dts';

const DIST = path.join(ROOT, 'dist');
const INDEX = path.join(DIST, 'index.d.ts');
const API = path.join(ROOT, 'docs', 'API.md');

// The name an entry heading gives each exported class's instances: `#### \`await channel.send(...)\``.
const INSTANCES: Record<string, string> = {
  channel: 'Channel',
  server: 'ChannelServer',
  hs: 'HandoffServer',
  inherited: 'Inheritance',
  up: 'Upgrader',
  dog: 'Watchdog',
  distributor: 'Distributor',
};

// Options typed with Node's own types: the entry says whose options they are (no table to compare).
const NODE_OPTIONS: Record<string, string> = {
  toDgram: "Omit<dgram.SocketOptions, 'type'>",
  spawnActivated: "Omit<SpawnOptions, 'stdio'> & {",
};

interface Entry {
  heading: string;
  where: string;
  /** The heading's level (3: an export, 4: a member). */
  level: number;
  /** The entry's text up to the next heading of its level or above. */
  body: string;
}

/** The headings of docs/API.md with the text under each. */
function entriesOf(file: string): Entry[] {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const entries: Entry[] = [];
  let fence = false;
  for (const [i, line] of lines.entries()) {
    if (/^```/.test(line)) fence = !fence;
    const heading = fence ? null : /^(#+)\s+(.*)$/.exec(line);
    if (!heading) {
      if (entries.length > 0) entries.at(-1)!.body += `${line}\n`;
      continue;
    }
    entries.push({ heading: heading[2]!, where: `${path.basename(file)}:${i + 1}`, level: heading[1]!.length, body: '' });
  }
  return entries;
}

/** The call a heading's first code span names: `const x = await handoff.take(path)` → `handoff.take`. */
function calledName(heading: string): string | null {
  const span = /`([^`]+)`/.exec(heading);
  if (!span) return null;
  const expr = span[1]!
    .replace(/^(?:const|let)\s+[^=]+=\s*/, '')
    .replace(/^await\s+/, '')
    .replace(/^new\s+/, '');
  return /^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)?/.exec(expr)?.[0] ?? null;
}

/** The names docs/API.md documents, each with where. */
function documentedIn(file: string): Map<string, string> {
  const documented = new Map<string, string>();
  let inTypes = false;
  for (const [i, line] of fs.readFileSync(file, 'utf8').split('\n').entries()) {
    const heading = /^(#+)\s+(.*)$/.exec(line);
    if (heading) {
      inTypes = /\btypes\b/i.test(heading[2]!) && !heading[2]!.includes('`');
      if (heading[1]!.length > 3) continue;
      for (const span of heading[2]!.matchAll(/`([^`]+)`/g)) {
        const name = calledName(`\`${span[1]}\``);
        if (name) documented.set(name, `${path.basename(file)}:${i + 1}`);
      }
    } else if (inTypes) {
      const row = /^\|\s*`([A-Za-z_$][\w$]*)`/.exec(line);
      if (row) documented.set(row[1]!, `${path.basename(file)}:${i + 1}`);
    }
  }
  return documented;
}

/** Text compared across Markdown and doc comments: links, code marks and line breaks dropped. */
function plain(text: string): string {
  return text
    .replace(/\{@link\s+([^}|\s]+)\s*(?:\|\s*([^}]+))?\}/g, (_, target: string, label?: string) => label ?? target)
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/`/g, '')
    .replace(/\s+/g, ' ')
    .trim();
}

/** The first sentence of a text: up to the first '.', '!' or '?' that ends it. */
function firstSentence(text: string): string {
  const t = text.replace(/\s+/g, ' ').trim();
  const end = /(?<!\be\.g|\bi\.e)[.!?](?=\s+[A-Z(`'"]|$)/.exec(t);
  return plain(end ? t.slice(0, end.index + 1) : t);
}

/** An entry's first paragraph (the summary), or ''. */
function summaryOf(entry: Entry): string {
  const paragraph = entry.body.trim().split(/\n\s*\n/)[0] ?? '';
  return /^[|<`-]/.test(paragraph) ? '' : paragraph;
}

/** The names in the first column of an entry's options table(s). */
function optionRows(entry: Entry): string[] | null {
  const lines = entry.body.split('\n');
  const header = lines.findIndex((l) => /^\|\s*option\s*\|\s*type\s*\|\s*default\s*\|\s*meaning\s*\|$/.test(l));
  if (header < 0) return null;
  const names: string[] = [];
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break;
    const cell = /^\|\s*`([A-Za-z_$][\w$]*)`/.exec(line);
    names.push(cell ? cell[1]! : line);
  }
  return names;
}

/** The options parameter of a call, if it has one. */
const optionsParam = (params: Param[]): Param | undefined => params.find((p) => p.name === 'opts' || p.name === 'options');

interface Documented {
  entry: Entry;
  what: string;
  decl: { doc: string | null; params: Param[]; file: string };
}

describe('docs/API.md matches dist/index.d.ts', () => {
  const exported = exportsOf(INDEX);
  const documented = documentedIn(API);
  const entries = entriesOf(API);

  // Each function, class and method entry with the declaration it documents.
  const calls: Documented[] = [];
  const classes = new Map<string, Declaration>();
  for (const entry of entries) {
    const name = calledName(entry.heading);
    if (name === null) continue;
    if (entry.level === 3) {
      const [head, member] = name.split('.');
      const decl =
        member === undefined
          ? declarationOf(INDEX, head!)
          : exported.namespaceFiles.has(head!)
            ? declarationOf(exported.namespaceFiles.get(head!)!, member)
            : null;
      if (decl?.kind === 'class') classes.set(decl.name, decl);
      if (decl?.kind === 'function' || decl?.kind === 'class') calls.push({ entry, what: name, decl });
    } else if (entry.level === 4) {
      const [instance, member] = name.split('.');
      const cls = INSTANCES[instance!];
      if (cls === undefined || member === undefined) continue;
      const decl = declarationOf(INDEX, cls);
      const method = decl && methodsOf(decl).find((m) => m.name === member);
      if (method) calls.push({ entry, what: `${cls}.${member}`, decl: { ...method, file: decl.file } });
    }
  }

  it('reads a plausible number of exports, entries and options', () => {
    assert.ok(exported.names.size > 60, `${exported.names.size} exports`);
    assert.ok(exported.namespaces.has('handoff') && exported.namespaces.has('systemd'));
    assert.ok(documented.size > 60, `${documented.size} documented names`);
    assert.ok(calls.length > 60, `${calls.length} function, class and method entries`);
    assert.deepEqual([...classes.keys()].sort(), [...Object.values(INSTANCES), 'FdpassError', 'FdpassSystemError'].sort());
    const withOptions = calls.filter((c) => optionsParam(c.decl.params) !== undefined);
    assert.ok(withOptions.length > 25, `${withOptions.length} entries of calls with options`);
  });

  it('every export of dist/index.d.ts (values and types, and namespace members) is documented', () => {
    const missing = [...exported.names].filter((n) => !documented.has(n)).sort();
    for (const [ns, members] of exported.namespaces) {
      for (const m of members)
        if (!documented.has(`${ns}.${m}`) && !(exported.names.has(m) && documented.has(m))) missing.push(`${ns}.${m}`);
    }
    assert.deepEqual(missing, [], 'exported but not documented in docs/API.md');
  });

  it('nothing documented in docs/API.md is missing from the exports', () => {
    const extra: string[] = [];
    for (const [name, where] of documented) {
      const [head, member] = name.split('.');
      if (member === undefined ? !exported.names.has(head!) : !exported.namespaces.get(head!)?.has(member))
        extra.push(`${name} (${where})`);
    }
    assert.deepEqual(extra, [], 'documented but not exported');
  });

  it('every public method of an exported class has an entry', () => {
    const missing: string[] = [];
    for (const [instance, cls] of Object.entries(INSTANCES)) {
      const decl = classes.get(cls);
      assert.ok(decl, `class ${cls} has an entry`);
      for (const m of methodsOf(decl))
        if (!calls.some((c) => c.what === `${cls}.${m.name}`)) missing.push(`${instance}.${m.name}() (${cls})`);
    }
    assert.deepEqual(missing, [], 'methods without a #### entry in docs/API.md');
  });

  it("every entry's first sentence is its doc comment's first sentence", () => {
    const drift: string[] = [];
    for (const { entry, what, decl } of calls) {
      const doc = decl.doc === null ? '(no doc comment)' : firstSentence(decl.doc);
      const md = firstSentence(summaryOf(entry));
      if (doc !== md) drift.push(`${what} (${entry.where}):\n  API.md:      ${md}\n  doc comment: ${doc}`);
    }
    assert.equal(drift.join('\n'), '', 'API.md and the doc comment (dist/*.d.ts, from lib/) disagree');
  });

  it("every options table lists exactly the options type's properties", () => {
    const drift: string[] = [];
    for (const { entry, what, decl } of calls) {
      const opts = optionsParam(decl.params);
      if (opts === undefined) continue;
      const type = opts.type.replace(/\s*\|\s*undefined$/, '');
      const shortName = what.split('.').pop()!;
      if (NODE_OPTIONS[shortName] !== undefined) {
        assert.ok(type.startsWith(NODE_OPTIONS[shortName]!), `${what}: options are ${type}`);
        continue;
      }
      const props = propertiesOf(decl.file, type);
      if (props === null) {
        drift.push(`${what}: options type ${type} is not read (a Node type? list it in NODE_OPTIONS)`);
        continue;
      }
      const rows = optionRows(entry);
      if (rows === null) {
        drift.push(`${what} (${entry.where}): no | option | type | default | meaning | table`);
        continue;
      }
      const missing = [...props].filter((p) => !rows.includes(p));
      const extra = rows.filter((r) => !props.has(r));
      if (missing.length + extra.length > 0)
        drift.push(
          `${what} (${entry.where}): missing from API.md [${missing.join(', ')}], not in ${type.replace(/\s+/g, ' ')} [${extra.join(', ')}]`,
        );
    }
    assert.equal(drift.join('\n'), '', 'options tables of docs/API.md against the options types of dist/*.d.ts');
  });

  it('every function and method entry ends with its errors and what it returns', () => {
    const union = /export type FdpassErrorCode =([^;]*);/.exec(fs.readFileSync(path.join(ROOT, 'lib', 'errors.ts'), 'utf8'));
    const codes = new Set([...(union?.[1] ?? '').matchAll(/'(ERR_FDPASS_\w+)'/g)].map((m) => m[1]!));
    assert.ok(codes.size > 10, `found ${codes.size} codes`);
    const problems: string[] = [];
    for (const { entry, what } of calls) {
      if (classes.has(what)) continue;
      const errors = /^\*\*Errors:\*\*(.*(?:\n(?!\n|\*\*).*)*)/m.exec(entry.body)?.[1] ?? '';
      for (const m of errors.matchAll(/ERR_FDPASS_\w+/g))
        if (!codes.has(m[0])) problems.push(`${what} (${entry.where}): ${m[0]} is no FdpassErrorCode`);
      if (!/^\*\*Errors:\*\* \S/m.test(entry.body)) problems.push(`${what} (${entry.where}): no **Errors:** line`);
      if (!/^\*\*Returns:\*\* \S/m.test(entry.body)) problems.push(`${what} (${entry.where}): no **Returns:** line`);
    }
    assert.deepEqual(problems, []);
  });
});
