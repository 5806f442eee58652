/**
 * The one place that decides whether output is coloured. FORCE_COLOR wins (as in Node itself; FORCE_COLOR=0 or
 * false turns colour off), then NO_COLOR set to anything non-empty turns it off (https://no-color.org), then
 * TERM=dumb; otherwise a terminal gets colour and a pipe or file does not.
 */
export function useColor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined && force !== '') return force !== '0' && force.toLowerCase() !== 'false';
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.TERM === 'dumb') return false;
  return Boolean(stream.isTTY);
}
