/**
 * `strategy: merge`: the Config's data is deep-merged into the image's YAML or JSON file.
 * Rules: mappings merge key by key, recursively; any other value (a scalar, a list, null) replaces the file's
 * value at that key whole, lists included (they are not concatenated or merged by index); keys the data does not
 * name are kept, with their comments and order. A YAML file of several `---` documents gets the data merged into
 * each of them (as sealer does). A JSON file (by its `.json` name, or text that parses as JSON) stays JSON.
 */
import { isMap, isScalar, parseAllDocuments, parseDocument, type Document } from 'yaml';
import { ProcessError } from './process.js';

export type FileFormat = 'json' | 'yaml';

export function formatOf(path: string, text: string): FileFormat {
  if (path.endsWith('.json')) return 'json';
  const t = text.trimStart();
  if (t.startsWith('{')) {
    try {
      JSON.parse(text);
      return 'json';
    } catch {
      /* YAML flow mapping */
    }
  }
  return 'yaml';
}

const isPlain = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** Merges `data` (already parsed: a mapping) into the file's text; throws ProcessError saying why it cannot. */
export function mergeInto(path: string, text: string, data: unknown): string {
  if (!isPlain(data)) throw new ProcessError('merge needs data that is a mapping (key: value)');
  if (formatOf(path, text) === 'json') {
    let base: unknown;
    try {
      base = JSON.parse(text);
    } catch (err) {
      throw new ProcessError(`the file is not valid JSON (${(err as Error).message})`);
    }
    if (!isPlain(base)) throw new ProcessError('the file\'s JSON is not an object, so nothing can be merged into it');
    return JSON.stringify(deepMerge(base, data), null, 2) + '\n';
  }
  const docs = parseAllDocuments(text, { uniqueKeys: false });
  const list = Array.isArray(docs) ? docs : [];
  const bad = list.find((d) => d.errors.length > 0);
  if (bad) throw new ProcessError(`the file is not valid YAML (${bad.errors[0].message.split('\n')[0]})`);
  const real = list.filter((d) => d.contents !== null);
  if (real.length === 0) throw new ProcessError('the file holds no YAML document to merge into');
  for (const d of real) {
    if (!isMap(d.contents)) throw new ProcessError('a document of the file is not a mapping, so nothing can be merged into it');
    mergeDoc(d, [], data);
  }
  return list.map((d) => d.toString()).join('');
}

/** Writes `values` into `data` of the Secret document of the file (toSecret); other keys of the Secret are kept. */
export function mergeSecret(text: string, values: Record<string, string>): string {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new ProcessError(`the file is not valid YAML (${doc.errors[0].message.split('\n')[0]})`);
  if (!isMap(doc.contents) || doc.get('kind') !== 'Secret') throw new ProcessError('toSecret needs the file to be a Kubernetes Secret (kind: Secret)');
  if (!isMap(doc.get('data'))) doc.set('data', doc.createNode({}));
  for (const [k, v] of Object.entries(values)) doc.setIn(['data', k], v);
  return doc.toString();
}

export function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = isPlain(v) && isPlain(out[k]) ? deepMerge(out[k] as Record<string, unknown>, v) : v;
  return out;
}

function mergeDoc(doc: Document, at: string[], over: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(over)) {
    const path = [...at, k];
    const node = doc.getIn(path, true);
    if (isPlain(v) && isMap(node)) mergeDoc(doc, path, v);
    // A scalar replaced in place keeps its comment.
    else if (isScalar(node) && (v === null || typeof v !== 'object')) node.value = v;
    else doc.setIn(path, doc.createNode(v));
  }
}
