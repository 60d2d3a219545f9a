// Environment variables that a test sets in this process and must put back.

/** Remembers the variables `keys` now; the function it returns puts each back (unset if it was unset). */
export function saveEnv(...keys: string[]): () => void {
  const saved = keys.map((k) => [k, process.env[k]] as const);
  return () => {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
}
