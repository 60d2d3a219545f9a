// docs/API.md against the shipped declarations (dist/index.d.ts): every export, value or type, is
// documented, and nothing documented is not exported. Documented means: named at the start of a code
// span in a heading of level 1 to 3 (`### \`sendFd(...)\``, `### \`const x = await handoff.take(...)\``),
// or in the first cell of a table under a "Types" heading. Level 4+ headings are members (channel.send).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './helpers/docs';

const DIST = path.join(ROOT, 'dist');

interface Exports {
  names: Set<string>;
  /** `export * as ns from ...`: ns → its members. */
  namespaces: Map<string, Set<string>>;
}

function resolveDts(from: string, spec: string): string {
  const base = path.resolve(path.dirname(from), spec);
  for (const f of [`${base}.d.ts`, path.join(base, 'index.d.ts')]) if (fs.existsSync(f)) return f;
  throw new Error(`${from}: cannot resolve '${spec}'`);
}

/** The exports of one .d.ts file, as tsc writes them. */
function exportsOf(file: string): Exports {
  const text = fs
    .readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/.*$/gm, '');
  const names = new Set<string>();
  const namespaces = new Map<string, Set<string>>();
  for (const m of text.matchAll(/export\s+(?:type\s+)?\{([^}]*)\}/g)) {
    for (const item of m[1]!
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)) {
      names.add(
        item
          .replace(/^type\s+/, '')
          .split(/\s+as\s+/)
          .pop()!
          .trim(),
      );
    }
  }
  for (const m of text.matchAll(/export\s+\*\s+as\s+(\w+)\s+from\s+'([^']+)'/g)) {
    names.add(m[1]!);
    namespaces.set(m[1]!, exportsOf(resolveDts(file, m[2]!)).names);
  }
  if (/export\s+\*\s+from/.test(text)) throw new Error(`${file}: 'export * from' is not understood by this checker`);
  for (const m of text.matchAll(
    /export\s+(?:declare\s+)?(?:abstract\s+)?(?:function|const|let|var|class|enum|interface|type|namespace)\s+([A-Za-z_$][\w$]*)/g,
  )) {
    names.add(m[1]!);
  }
  return { names, namespaces };
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
        const expr = span[1]!
          .replace(/^(?:const|let)\s+[^=]+=\s*/, '')
          .replace(/^await\s+/, '')
          .replace(/^new\s+/, '');
        const name = /^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)?/.exec(expr);
        if (name) documented.set(name[0], `${path.basename(file)}:${i + 1}`);
      }
    } else if (inTypes) {
      const row = /^\|\s*`([A-Za-z_$][\w$]*)`/.exec(line);
      if (row) documented.set(row[1]!, `${path.basename(file)}:${i + 1}`);
    }
  }
  return documented;
}

describe('docs/API.md matches dist/index.d.ts', () => {
  const api = path.join(ROOT, 'docs', 'API.md');
  const exported = exportsOf(path.join(DIST, 'index.d.ts'));
  const documented = documentedIn(api);

  it('reads a plausible number of exports and documented names', () => {
    assert.ok(exported.names.size > 60, `${exported.names.size} exports`);
    assert.ok(exported.namespaces.has('handoff') && exported.namespaces.has('systemd'));
    assert.ok(documented.size > 60, `${documented.size} documented names`);
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
});
