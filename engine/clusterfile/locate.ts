/** Maps a field path in a parsed YAML document back to file:line:column, for errors that point at the source. */
import { isMap, isPair, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';
import type { Location } from '../kernel/errors.js';

export type FieldPath = readonly (string | number)[];

/**
 * A key that reads as a field name. Anything else is not shown: `{user: root, passwd hunter2}` (a ":" missing)
 * makes the password a key, and a Clusterfile's errors never quote its secrets.
 */
export function isPlainKey(key: string): boolean {
  return /^(?:[A-Za-z0-9_][A-Za-z0-9_.\/-]{0,127}|<<)$/.test(key);
}

/** `spec.hosts[0].ips[1]`; a key that is not a plain word shows as `<key>`. */
export function formatPath(path: FieldPath): string {
  let s = '';
  for (const seg of path) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else {
      const name = isPlainKey(seg) ? seg : '<key>';
      s += s ? `.${name}` : name;
    }
  }
  return s || '(document)';
}

/**
 * Deepest node along `path`; with `atKey`, the key node of the last segment (where an unknown field is named).
 * A path that runs off the document (a missing field) stops at the nearest existing parent.
 */
export function findNode(doc: Document, path: FieldPath, atKey = false): Node | undefined {
  let node: unknown = doc.contents;
  let found = node as Node | undefined;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) return found;
      if (last && atKey && isScalar(pair.key)) return pair.key;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg];
    } else {
      return found;
    }
    if (node && typeof node === 'object' && 'range' in node) found = node as Node;
    else return found;
  }
  return found;
}

export function locate(doc: Document, lines: LineCounter, file: string, path: FieldPath, atKey = false): Location {
  const node = findNode(doc, path, atKey);
  const offset = node?.range?.[0] ?? doc.contents?.range?.[0] ?? 0;
  const pos = lines.linePos(offset);
  return { file, line: pos.line, column: pos.col };
}
