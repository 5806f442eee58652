/**
 * The YAML a Clusterfile may use, checked on the parsed syntax tree before any value is built from it:
 * anchors, aliases and merge keys are refused (an alias bomb never gets expanded, and a shared secret is written
 * with `${VAR}` instead), and so are keys that are mappings or lists. Messages never quote the file's text:
 * a Clusterfile carries passwords, so a problem is told by position, field path and kind only.
 */
import { isAlias, isMap, isPair, isScalar, isSeq, type Document, type Node, type ErrorCode } from 'yaml';
import type { FieldPath } from './locate.js';

export interface SubsetIssue {
  /** Offset in the source text. */
  offset: number;
  path: FieldPath;
  message: string;
  rule: 'yaml-alias' | 'yaml-anchor' | 'yaml-merge-key' | 'yaml-key';
}

const SHARE = 'use ${VAR} to give several fields one value';
const MESSAGES: Record<SubsetIssue['rule'], string> = {
  'yaml-alias': `YAML aliases (*name) are not allowed in a Clusterfile: write the value out (${SHARE})`,
  'yaml-anchor': `YAML anchors (&name) are not allowed in a Clusterfile: remove the anchor (${SHARE})`,
  'yaml-merge-key': 'YAML merge keys (<<) are not allowed in a Clusterfile: write the fields out',
  'yaml-key': 'a key must be plain text, not a mapping or a list',
};

/**
 * Every anchor, alias, merge key and non-text key in `doc`, in document order. Walks the tree with an explicit
 * stack and never follows an alias, so time and memory are linear in the size of the file.
 */
export function subsetIssues(doc: Document, source: string): SubsetIssue[] {
  const out: SubsetIssue[] = [];
  const report = (rule: SubsetIssue['rule'], offset: number, path: FieldPath) => out.push({ offset, path, message: MESSAGES[rule], rule });
  const stack: { node: unknown; path: FieldPath }[] = [{ node: doc.contents, path: [] }];
  while (stack.length > 0) {
    const { node, path } = stack.pop()!;
    if (!node || typeof node !== 'object') continue;
    if (isAlias(node)) {
      report('yaml-alias', start(node), path);
      continue;
    }
    const anchor = (node as { anchor?: string }).anchor;
    if (anchor) report('yaml-anchor', anchorOffset(source, anchor, start(node as Node)), path);
    const children: { node: unknown; path: FieldPath }[] = [];
    if (isMap(node)) {
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const key = pair.key;
        if (isScalar(key)) {
          const name = key.value === null || key.value === undefined ? '' : String(key.value);
          if (key.anchor) report('yaml-anchor', anchorOffset(source, key.anchor, start(key)), [...path, name]);
          if (key.type === 'PLAIN' && name === '<<') {
            report('yaml-merge-key', start(key), [...path, name]);
            continue; // what it merges is part of the same refused construct
          }
          children.push({ node: pair.value, path: [...path, name] });
        } else if (isAlias(key)) {
          report('yaml-alias', start(key), path);
        } else if (key !== null && key !== undefined) {
          report('yaml-key', start(key as Node), path);
        } else {
          children.push({ node: pair.value, path: [...path, ''] });
        }
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => children.push({ node: item, path: [...path, i] }));
    }
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]); // pop in document order
  }
  return out;
}

function start(node: Node): number {
  return node.range?.[0] ?? 0;
}

/** The `&name` before a node: the node's own range starts after its anchor (and tag, and comments). */
function anchorOffset(source: string, anchor: string, nodeStart: number): number {
  const at = source.lastIndexOf(`&${anchor}`, nodeStart);
  return at >= 0 ? at : nodeStart;
}

/**
 * Our own text for each kind of YAML syntax error. The library's messages may quote a piece of the file
 * (an escape sequence, a tag, a key), and a Clusterfile holds passwords, so none of them is passed on.
 */
const SYNTAX: Record<ErrorCode, string> = {
  ALIAS_PROPS: 'an alias cannot have an anchor or a tag',
  BAD_ALIAS: 'a malformed alias (*name)',
  BAD_COLLECTION_TYPE: 'the tag (!…) does not fit this kind of value',
  BAD_DIRECTIVE: 'an unknown or unsupported % directive',
  BAD_DQ_ESCAPE: 'an invalid escape sequence in a double-quoted string: write \\\\ for a backslash, or use single quotes',
  BAD_INDENT: 'bad indentation: the entries of one mapping or list must start in the same column',
  BAD_PROP_ORDER: 'an anchor or tag is in the wrong place',
  BAD_SCALAR_START: 'a plain value cannot start with this character: put the value in quotes',
  BLOCK_AS_IMPLICIT_KEY: 'a key cannot be a block value',
  BLOCK_IN_FLOW: 'block syntax inside {…} or […]: use flow syntax there, or leave the brackets out',
  DUPLICATE_KEY: 'the same key appears twice in one mapping',
  IMPOSSIBLE: 'the YAML cannot be read here',
  KEY_OVER_1024_CHARS: 'a key is longer than 1024 characters, or a ":" is missing',
  MISSING_CHAR: 'something is not closed or separated: check the quotes, brackets and braces, and the ":" and "," between entries',
  MULTILINE_IMPLICIT_KEY: 'a key runs over several lines, or a ":" is missing',
  MULTIPLE_ANCHORS: 'a value has more than one anchor',
  MULTIPLE_DOCS: 'a second document starts without a --- line',
  MULTIPLE_TAGS: 'a value has more than one tag',
  NON_STRING_KEY: 'a key must be plain text',
  RESOURCE_EXHAUSTION: 'the YAML is nested too deeply or is too large to read',
  TAB_AS_INDENT: 'a tab is used for indentation: indent with spaces',
  TAG_RESOLVE_FAILED: 'an unknown tag (!…), or a value that does not fit its tag',
  UNEXPECTED_TOKEN: 'unexpected text here: check the indentation and punctuation',
};

export function syntaxMessage(code: ErrorCode): string {
  return `invalid YAML: ${SYNTAX[code] ?? 'the YAML cannot be read here'}`;
}
