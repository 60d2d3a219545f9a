// The drain's close spread (HAProxy's close-spread-time): each connection's turn to be let go comes at
// its own moment, drawn uniformly over the window, so keep-alive clients do not all reconnect to a
// cold successor at once. Times are monotonic (performance.now()).

/** When each connection's turn to close comes: drawn uniformly over [start, start + spread). */
export function closeTurns<K extends object>(start: number, spread: number): (key: K) => number {
  const turns = new WeakMap<K, number>();
  return (key) => {
    let turn = turns.get(key);
    if (turn === undefined) {
      turn = start + Math.floor(Math.random() * spread);
      turns.set(key, turn);
    }
    return turn;
  };
}
