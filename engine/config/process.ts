/**
 * The `process` chain of a Config, as sealer defines it: `toJson` turns YAML into JSON, `toBase64` encodes,
 * `value` applies the processors after it to each top-level value of the data instead of the whole, and
 * `toSecret` (last, after `value`) writes each key into the `data` of the Kubernetes Secret at the Config's path.
 */
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import type { Processor } from '../clusterfile/config-spec.js';

/** What the chain made: one text, or (after `value`) one string per top-level key. */
export type Processed = { kind: 'text'; text: string } | { kind: 'values'; values: Record<string, string>; secret: boolean };

export class ProcessError extends Error {}

/** A string is the text of the data; a mapping or list written inline in the Clusterfile is its YAML. */
export function dataText(data: unknown): string {
  return typeof data === 'string' ? data : stringifyYaml(data);
}

export function processData(data: unknown, chain: Processor[]): Processed {
  if (chain[0] !== 'value') {
    let text = dataText(data);
    for (const p of chain) text = step(p, text, () => parseText(text, 'data'));
    return { kind: 'text', text };
  }
  const whole = typeof data === 'string' ? parseText(data, 'data') : data;
  if (!whole || typeof whole !== 'object' || Array.isArray(whole)) {
    throw new ProcessError('process starts with value, so data must be a mapping (each top-level value is processed on its own)');
  }
  const rest = chain.slice(1).filter((p) => p !== 'toSecret');
  const values: Record<string, string> = {};
  for (const [k, v] of Object.entries(whole as Record<string, unknown>)) {
    let text = typeof v === 'string' ? v : rest.includes('toJson') ? JSON.stringify(v) : stringifyYaml(v).replace(/\n$/, '');
    // A string value is YAML text of its own (a block in the Clusterfile): toJson converts what it says.
    for (const p of rest) text = step(p, text, () => (typeof v === 'string' ? parseText(v, `data.${k}`) : v));
    values[k] = text;
  }
  const secret = chain.includes('toSecret');
  // A Secret's data holds base64: values not encoded by the chain are encoded here.
  if (secret && !rest.includes('toBase64')) for (const k of Object.keys(values)) values[k] = Buffer.from(values[k], 'utf8').toString('base64');
  return { kind: 'values', values, secret };
}

function step(p: Processor, text: string, parsed: () => unknown): string {
  if (p === 'toJson') {
    return JSON.stringify(parsed());
  }
  if (p === 'toBase64') return Buffer.from(text, 'utf8').toString('base64');
  return text;
}

function parseText(text: string, what: string): unknown {
  try {
    return parseYaml(text);
  } catch (err) {
    throw new ProcessError(`${what} is not valid YAML or JSON (${(err as Error).message.split('\n')[0]})`);
  }
}
