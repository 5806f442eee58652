/** Shell form of an exec-form array, quoted so `sh -c` runs exactly those words. */
export function shellJoin(words: string[]): string {
  return words.map((w) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(' ');
}
