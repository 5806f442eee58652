import { afterAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { mergeInto, mergeSecret } from '../engine/config/merge.js';
import { processData, ProcessError } from '../engine/config/process.js';
import { renderTemplate, TemplateError } from '../engine/config/template.js';
import { maskedDiff } from '../engine/config/masked-diff.js';
import { confine, ConfineError } from '../engine/config/confine.js';
import { configSpecIssues, parseProcess } from '../engine/clusterfile/config-spec.js';
import { parseClusterfile } from '../engine/clusterfile/parse.js';
import { ClusterfileInvalidError } from '../engine/clusterfile/errors.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('merge strategy', () => {
  test('mappings merge deeply; scalars and lists are replaced whole; other keys and comments stay', () => {
    const file = '# app settings\nserver:\n  port: 80 # the port\n  hosts: [a, b]\nlog: info\n';
    const out = mergeInto('values.yaml', file, { server: { port: 8080, hosts: ['c'] }, extra: { on: true } });
    expect(parseYaml(out)).toEqual({ server: { port: 8080, hosts: ['c'] }, log: 'info', extra: { on: true } });
    expect(out).toContain('# app settings');
    expect(out).toContain('# the port');
  });

  test('a mapping replaces a scalar and null is written as null', () => {
    expect(parseYaml(mergeInto('a.yaml', 'a: 1\nb: 2\n', { a: { x: 1 }, b: null }))).toEqual({ a: { x: 1 }, b: null });
  });

  test('every --- document of the file gets the data', () => {
    const out = mergeInto('m.yaml', 'kind: A\nspec: {n: 1}\n---\nkind: B\n', { spec: { n: 2 } });
    const docs = out.split(/^---$/m).map((t) => parseYaml(t));
    expect(docs).toEqual([{ kind: 'A', spec: { n: 2 } }, { kind: 'B', spec: { n: 2 } }]);
  });

  test('JSON stays JSON', () => {
    const out = mergeInto('conf.json', '{"a": {"b": 1, "c": [1, 2]}}', { a: { c: [3] } });
    expect(JSON.parse(out)).toEqual({ a: { b: 1, c: [3] } });
  });

  test('a file that is not YAML or JSON, or not a mapping, is refused saying why', () => {
    expect(() => mergeInto('x.json', 'not json', { a: 1 })).toThrow(/not valid JSON/);
    expect(() => mergeInto('x.conf', 'a: [1, 2\n', { a: 1 })).toThrow(/not valid YAML/);
    expect(() => mergeInto('x.yaml', '- a\n- b\n', { a: 1 })).toThrow(/not a mapping/);
    expect(() => mergeInto('x.yaml', 'a: 1\n', ['no'])).toThrow(ProcessError);
  });

  test('toSecret writes into data of the Secret, keeping its other keys', () => {
    const out = mergeSecret('apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  old: b2xk\n', { pw: b64('x') });
    expect(parseYaml(out).data).toEqual({ old: 'b2xk', pw: b64('x') });
    expect(() => mergeSecret('kind: ConfigMap\n', { a: 'b' })).toThrow(/kind: Secret/);
  });
});

describe('processors', () => {
  test('toJson and toBase64 on the whole data', () => {
    expect(processData('a: 1\nb: [x]\n', ['toJson'])).toEqual({ kind: 'text', text: '{"a":1,"b":["x"]}' });
    expect(processData('a: 1\n', ['toJson', 'toBase64'])).toEqual({ kind: 'text', text: b64('{"a":1}') });
    expect(processData({ a: 1 }, [])).toEqual({ kind: 'text', text: 'a: 1\n' });
  });

  test('value applies the chain to each top-level value', () => {
    const r = processData('config: {username: root}\nname: plain\n', ['value', 'toJson', 'toBase64']);
    expect(r).toEqual({ kind: 'values', secret: false, values: { config: b64('{"username":"root"}'), name: b64('"plain"') } });
    expect(processData({ a: 'text' }, ['value', 'toBase64'])).toEqual({ kind: 'values', secret: false, values: { a: b64('text') } });
  });

  test('toSecret encodes values the chain did not encode', () => {
    expect(processData({ pw: 's3cret' }, ['value', 'toSecret'])).toEqual({ kind: 'values', secret: true, values: { pw: b64('s3cret') } });
    expect(processData({ pw: 's3cret' }, ['value', 'toBase64', 'toSecret'])).toEqual({ kind: 'values', secret: true, values: { pw: b64('s3cret') } });
  });

  test('value needs a mapping', () => {
    expect(() => processData('- a\n', ['value'])).toThrow(/must be a mapping/);
  });

  test('the chain is checked: names, order, repeats', () => {
    expect(parseProcess('value|toJson|toBase64|toSecret')).toEqual({ chain: ['value', 'toJson', 'toBase64', 'toSecret'] });
    expect(parseProcess('toYaml')).toEqual({ error: expect.stringContaining('unknown processor "toYaml"') });
    expect(parseProcess('toJson|value')).toEqual({ error: expect.stringContaining('value must come first') });
    expect(parseProcess('value|toSecret|toJson')).toEqual({ error: expect.stringContaining('toSecret must come last') });
    expect(parseProcess('toSecret')).toEqual({ error: expect.stringContaining('start the chain with value') });
    expect(parseProcess('toJson|toJson')).toEqual({ error: expect.stringContaining('twice') });
  });
});

describe('Config documents in the Clusterfile', () => {
  const cluster = 'apiVersion: cloudimage.io/v1\nkind: Cluster\nmetadata: {name: c}\nspec:\n  image: x:1\n  hosts:\n  - roles: [master]\n    ips: [10.0.0.2]\n';
  test('a valid Config is kept with where it is', () => {
    const d = parseClusterfile(`${cluster}---\napiVersion: sealer.io/v1\nkind: Config\nmetadata: {name: app}\nspec:\n  path: etc/app.yaml\n  strategy: merge\n  data: |\n    a: 1\n`, 'Clusterfile', {});
    expect(d.configs[0]).toMatchObject({ name: 'app', at: { file: 'Clusterfile', line: 11 } });
  });

  test('bad fields are errors with file:line', () => {
    const text = `${cluster}---\napiVersion: sealer.io/v1\nkind: Config\nmetadata: {name: app}\nspec:\n  path: ../etc/passwd\n  strategy: insert\n  process: value|toYaml\n`;
    let err: unknown;
    try {
      parseClusterfile(text, 'Clusterfile', {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ClusterfileInvalidError);
    const issues = (err as ClusterfileInvalidError).issues.map((i) => `${i.location.line} ${i.path}: ${i.message}`);
    expect(issues).toEqual([
      expect.stringMatching(/^14 spec\.path: must not contain "\.\."/),
      expect.stringMatching(/^14 spec\.data: is required/),
      expect.stringMatching(/^15 spec\.strategy: must be one of "overwrite", "merge"/),
      expect.stringMatching(/^16 spec\.process: unknown processor "toYaml"/),
    ]);
  });

  test('paths must stay inside the rootfs', () => {
    expect(configSpecIssues({ path: '/etc/passwd', data: 'x' })[0].message).toMatch(/relative to the image rootfs/);
    expect(configSpecIssues({ path: 'a/../../b', data: 'x' })[0].message).toMatch(/\.\./);
    expect(configSpecIssues({ path: 'etc/', data: 'x' })[0].message).toMatch(/a file/);
    expect(configSpecIssues({ path: 'etc/a', data: 'x', appName: 'm' })[0].message).toMatch(/appName is not supported/);
  });
});

describe('symlinks in a Config path', () => {
  const root = mkdtempSync(join(tmpdir(), 'ci-confine-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'usr/etc'), { recursive: true });
  writeFileSync(join(root, 'usr/etc/app.yaml'), 'a: 1\n');
  symlinkSync('usr/etc', join(root, 'etc'));
  symlinkSync('/etc', join(root, 'hostetc'));
  symlinkSync('../../..', join(root, 'usr/up'));
  writeFileSync(join(root, 'file'), '');

  test('a link inside the rootfs is followed to the real path', async () => {
    expect(await confine(root, 'etc/app.yaml')).toBe('usr/etc/app.yaml');
    expect(await confine(root, 'etc/new/x.yaml')).toBe('usr/etc/new/x.yaml');
  });

  test('links that leave the rootfs are refused', async () => {
    await expect(confine(root, 'hostetc/passwd')).rejects.toThrow(/hostetc -> \/etc, which leaves the rootfs/);
    await expect(confine(root, 'usr/up/etc/passwd')).rejects.toThrow(ConfineError);
    await expect(confine(root, 'file/x')).rejects.toThrow(/not a directory/);
    await expect(confine(root, 'usr/etc')).rejects.toThrow(/is a directory/);
  });
});

describe('templates', () => {
  test('{{ .Key }} and default', () => {
    expect(renderTemplate('port: {{ .Port }}\nhost: {{.Host | default "localhost"}}\nq: {{ .Q | default "a \\"b\\"" }}\n', { Port: '2379' })).toBe('port: 2379\nhost: localhost\nq: a "b"\n');
    expect(renderTemplate('x: {{ .A | default "d" }}', { A: '' })).toBe('x: ');
  });

  test('an unknown key or unsupported syntax is an error with its line', () => {
    const catchIt = (t: string, env = {}) => {
      try {
        renderTemplate(t, env);
      } catch (e) {
        return e as TemplateError;
      }
      throw new Error('no error');
    };
    const unknown = catchIt('a: 1\nb: {{ .Missing }}\n');
    expect(unknown.line).toBe(2);
    expect(unknown.message).toMatch(/Missing, which is not in the cluster's spec\.env/);
    expect(catchIt('{{ range .L }}x{{ end }}').message).toMatch(/unsupported template syntax/);
    expect(catchIt('a\n{{ .X | upper }}', { X: 'x' }).line).toBe(2);
    expect(catchIt('a\nb {{ .X', { X: 'x' }).message).toMatch(/never closed/);
  });

  test('values are not rendered again', () => {
    expect(renderTemplate('{{ .A }}', { A: '{{ .B }}' })).toBe('{{ .B }}');
  });
});

describe('diff rendering', () => {
  test('a unified diff of the change', () => {
    const d = maskedDiff('etc/app.yaml', 'a: 1\nb: 2\n', 'a: 1\nb: 3\n');
    expect(d).toBe('--- a/etc/app.yaml\n+++ b/etc/app.yaml\n@@ -1,2 +1,2 @@\n a: 1\n-b: 2\n+b: 3\n');
    expect(maskedDiff('x', 'same', 'same')).toBe('');
    expect(maskedDiff('new.yaml', undefined, 'a: 1\n')).toMatch(/^--- \/dev\/null\n\+\+\+ b\/new\.yaml\n/);
  });

  test('passwords, tokens, keys and Secret values are masked, and the change still shows', () => {
    const before = 'db:\n  user: app\n  password: hunter2-old\napiToken: tok-123456\nPRIVATE_KEY=abc-def-ghi\n';
    const after = 'db:\n  user: app2\n  password: hunter2-new\napiToken: tok-654321\nPRIVATE_KEY=zzz-yyy-xxx\n';
    const d = maskedDiff('etc/app.yaml', before, after);
    for (const s of ['hunter2-old', 'hunter2-new', 'tok-123456', 'tok-654321', 'abc-def-ghi', 'zzz-yyy-xxx']) expect(d).not.toContain(s);
    expect(d).toContain('-  password: ******');
    expect(d).toContain('+  password: ******');
    expect(d).toContain('+  user: app2');
    const secret = (v: string) => `apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  conn: ${b64(v)}\n`;
    const s = maskedDiff('s.yaml', secret('postgres://u:p@db'), secret('postgres://u:q@db'));
    expect(s).not.toContain(b64('postgres://u:p@db'));
    expect(s).not.toContain(b64('postgres://u:q@db'));
    expect(s).toMatch(/^-  conn: \*+$/m);
    expect(s).toMatch(/^\+  conn: \*+$/m);
  });
});
