// Reads the shipped declarations (dist/**/*.d.ts, as tsc writes them) for test/api-docs.test.ts:
// what index.d.ts exports, where each export is declared, its doc comment, its parameters, the
// methods of an exported class, and the properties of an options interface. Regular expressions over
// tsc's own output (one declaration per line, 4-space indents): TypeScript 7 has no compiler API to ask.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface Exports {
  names: Set<string>;
  /** `export * as ns from ...`: ns → its members. */
  namespaces: Map<string, Set<string>>;
  /** `export * as ns from ...`: ns → the file. */
  namespaceFiles: Map<string, string>;
}

export interface Param {
  name: string;
  type: string;
}

export interface Declaration {
  kind: 'function' | 'class' | 'const' | 'other';
  name: string;
  file: string;
  /** The doc comment's text (markers and indents dropped), or null. */
  doc: string | null;
  params: Param[];
  /** The declaration's text: for a class, its whole body. */
  text: string;
}

export interface Method {
  name: string;
  doc: string | null;
  params: Param[];
}

const read = (file: string): string => fs.readFileSync(file, 'utf8');
const withoutComments = (text: string): string => text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');

export function resolveDts(from: string, spec: string): string {
  const base = path.resolve(path.dirname(from), spec);
  for (const f of [`${base}.d.ts`, path.join(base, 'index.d.ts')]) if (fs.existsSync(f)) return f;
  throw new Error(`${from}: cannot resolve '${spec}'`);
}

/** The exports of one .d.ts file. */
export function exportsOf(file: string): Exports {
  const text = withoutComments(read(file));
  const names = new Set<string>();
  const namespaces = new Map<string, Set<string>>();
  const namespaceFiles = new Map<string, string>();
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
    const nsFile = resolveDts(file, m[2]!);
    namespaceFiles.set(m[1]!, nsFile);
    namespaces.set(m[1]!, exportsOf(nsFile).names);
  }
  if (/export\s+\*\s+from/.test(text)) throw new Error(`${file}: 'export * from' is not understood by this checker`);
  for (const m of text.matchAll(
    /export\s+(?:declare\s+)?(?:abstract\s+)?(?:function|const|let|var|class|enum|interface|type|namespace)\s+([A-Za-z_$][\w$]*)/g,
  )) {
    names.add(m[1]!);
  }
  return { names, namespaces, namespaceFiles };
}

/** The doc comment that ends right before `index` in `text` (only whitespace between), as plain text. */
function docBefore(text: string, index: number): string | null {
  const before = text.slice(0, index).trimEnd();
  if (!before.endsWith('*/')) return null;
  const start = before.lastIndexOf('/**');
  if (start < 0) return null;
  return before
    .slice(start + 3, -2)
    .split('\n')
    .map((l) => l.replace(/^\s*\*\s?/, '').trim())
    .join('\n')
    .trim();
}

/** Splits a parameter list at its top-level commas (not those inside <>, (), {}, []). */
export function splitParams(list: string): Param[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (let i = 0; i < list.length; i++) {
    const c = list[i]!;
    if (c === '=' && list[i + 1] === '>') {
      cur += '=>';
      i++;
      continue;
    }
    if ('<({['.includes(c)) depth++;
    else if ('>)}]'.includes(c)) depth--;
    if (c === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  if (cur.trim() !== '') parts.push(cur);
  return parts.map((p) => {
    const m = /^\s*(?:\.\.\.)?([\w$]+)\??\s*:\s*([\s\S]*)$/.exec(p);
    return m ? { name: m[1]!, type: m[2]!.trim() } : { name: p.trim(), type: '' };
  });
}

/** The text between the parenthesis at `open` and its match. */
function parenthesized(text: string, open: number): string {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === '(') depth++;
    else if (text[i] === ')' && --depth === 0) return text.slice(open + 1, i);
  }
  throw new Error(`unbalanced parentheses at ${open}`);
}

/** The class body from the `{` at `open` to its match. */
function braced(text: string, open: number): string {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}' && --depth === 0) return text.slice(open + 1, i);
  }
  throw new Error(`unbalanced braces at ${open}`);
}

/** Where `name`, exported by `file`, is declared: re-exports are followed to the declaring file. */
export function declarationOf(file: string, name: string): Declaration | null {
  const text = read(file);
  const decl = new RegExp(`^export declare (function|class|const|abstract class) ${name.replace('$', '\\$')}\\b`, 'm').exec(text);
  if (decl) {
    const kind = decl[1] === 'abstract class' ? 'class' : (decl[1] as 'function' | 'class' | 'const');
    const doc = docBefore(text, decl.index);
    if (kind === 'function') {
      const open = text.indexOf('(', decl.index);
      return {
        kind,
        name,
        file,
        doc,
        params: splitParams(parenthesized(text, open)),
        text: text.slice(decl.index, text.indexOf('\n', decl.index)),
      };
    }
    if (kind === 'class') return { kind, name, file, doc, params: [], text: braced(text, text.indexOf('{', decl.index)) };
    return { kind, name, file, doc, params: [], text: text.slice(decl.index, text.indexOf('\n', decl.index)) };
  }
  const plain = withoutComments(text);
  for (const m of plain.matchAll(/export\s+(?:type\s+)?\{([^}]*)\}\s+from\s+'([^']+)'/g)) {
    for (const item of m[1]!.split(',').map((s) => s.trim().replace(/^type\s+/, ''))) {
      const [orig, alias = orig] = item.split(/\s+as\s+/).map((s) => s.trim());
      if (alias === name) return declarationOf(resolveDts(file, m[2]!), orig!);
    }
  }
  if (new RegExp(`^export (?:declare )?(?:interface|type) ${name}\\b`, 'm').test(text)) {
    return { kind: 'other', name, file, doc: null, params: [], text: '' };
  }
  return null;
}

/** The public methods of a class declaration (constructors, getters, fields and symbols left out). */
export function methodsOf(cls: Declaration): Method[] {
  const methods: Method[] = [];
  for (const m of cls.text.matchAll(/^ {4}(?:static\s+)?([A-Za-z_$][\w$]*)\s*(?:<[^>]*>)?\(/gm)) {
    if (m[1] === 'constructor') continue;
    const open = m.index + m[0].length - 1;
    methods.push({ name: m[1]!, doc: docBefore(cls.text, m.index), params: splitParams(parenthesized(cls.text, open)) });
  }
  return methods;
}

/** The property names of an interface or object type body (its members at the first indent). */
function propsOfBody(body: string): Set<string> {
  const props = new Set<string>();
  if (!body.includes('\n')) body = body.replace(/;/g, ';\n    ').replace(/^\s*/, '    ');
  const indent = /^( +)\S/m.exec(body)?.[1] ?? '    ';
  const member = new RegExp(`^${indent}(?:readonly\\s+)?([A-Za-z_$][\\w$]*)\\??\\s*[:(]`, 'gm');
  for (const p of withoutComments(body).matchAll(member)) props.add(p[1]!);
  return props;
}

/**
 * The property names of the interface `name` as seen from `file` (followed through imports, `extends`,
 * `Pick<>` and `Omit<>`), or null when it is not an interface of this package (a Node type).
 */
export function propertiesOf(file: string, name: string): Set<string> | null {
  if (name.startsWith('{')) return propsOfBody(name.slice(1, name.lastIndexOf('}')));
  const text = read(file);
  const iface = new RegExp(`^export interface ${name}\\b([^{]*)\\{`, 'm').exec(text);
  if (iface) {
    const props = propsOfBody(braced(text, iface.index + iface[0].length - 1));
    const heritage = iface[1]!.replace(/^\s*extends\s+/, '').trim();
    if (heritage !== '') {
      for (const base of splitParams(heritage).map((p) => p.name)) {
        const pick = /^(Pick|Omit)<([\w$.]+),\s*([\s\S]*)>$/.exec(base);
        if (pick) {
          const keys = new Set([...pick[3]!.matchAll(/'([^']+)'/g)].map((k) => k[1]!));
          const from = propertiesOf(file, pick[2]!);
          if (from === null) return null;
          for (const k of from) if ((pick[1] === 'Pick') === keys.has(k)) props.add(k);
        } else {
          const from = propertiesOf(file, base);
          if (from === null) return null;
          for (const k of from) props.add(k);
        }
      }
    }
    return props;
  }
  // Imported from a sibling file of the package.
  for (const m of withoutComments(text).matchAll(/import\s+(?:type\s+)?\{([^}]*)\}\s+from\s+'(\.[^']+)'/g)) {
    const names = m[1]!.split(',').map((s) => s.trim().replace(/^type\s+/, ''));
    if (names.includes(name)) return propertiesOf(resolveDts(file, m[2]!), name);
  }
  return null;
}
