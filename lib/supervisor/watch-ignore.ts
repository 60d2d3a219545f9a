// Which changes under a --watch path do not reload: node_modules and .git always, plus --watch-ignore
// globs. A glob without '/' matches any one path component (`*.log`, `dist`), like a .gitignore line;
// one with '/' matches the path relative to the watched directory from its start (`src/gen/**`). A
// match of a directory covers everything under it. `*` and `?` stay within a component, `**` crosses.

/** Always ignored: dependency installs and version control churn are not code changes. */
export const ALWAYS_IGNORED = ['node_modules', '.git'];

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Throws a plain Error (the CLI turns it into a usage error) for a pattern that cannot match anything. */
export function validateIgnorePattern(pattern: string): void {
  const p = pattern.replace(/^\.?\//, '');
  if (p === '' || p.endsWith('/') || p.split('/').includes(''))
    throw new Error(`--watch-ignore: '${pattern}' is not a glob of path components (e.g. '*.log', 'dist', 'src/gen/**')`);
}

/** A predicate over paths relative to a watched directory: true if a change there does not reload. */
export function ignoreMatcher(patterns: readonly string[]): (relative: string) => boolean {
  const components: RegExp[] = [];
  const anchored: RegExp[] = [];
  for (const raw of [...ALWAYS_IGNORED, ...patterns]) {
    const p = raw.replace(/^\.?\//, '');
    (p.includes('/') ? anchored : components).push(globToRegExp(p));
  }
  return (relative) => {
    const parts = relative.split('/').filter((x) => x !== '' && x !== '.');
    if (parts.some((part) => components.some((re) => re.test(part)))) return true;
    for (let n = 1; n <= parts.length; n++) {
      const prefix = parts.slice(0, n).join('/');
      if (anchored.some((re) => re.test(prefix))) return true;
    }
    return false;
  };
}
