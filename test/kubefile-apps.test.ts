/** sealer's application instructions in the Kubefile parser: every form, and every error with its line. */
import { describe, expect, it } from 'vitest';
import { parseKubefile } from '../engine/image/kubefile.js';
import { KubefileError, KubefileErrors } from '../engine/kernel/errors.js';

const parse = (lines: string[]) => parseKubefile(lines.join('\n'), 'Kubefile');

function refusal(lines: string[]): KubefileError {
  try {
    parse(lines);
  } catch (err) {
    expect(err).toBeInstanceOf(KubefileError);
    return err as KubefileError;
  }
  throw new Error('the Kubefile was accepted');
}

describe('Kubefile: APP, APPCMDS, LAUNCH, CMDS', () => {
  it('parses every form, keywords in any case', () => {
    const ins = parse([
      'FROM scratch',
      'APP web local://web.sh',
      'app manifests local://k8s/ "local://more files/x.yaml"',
      'APPCMDS web ["sh web.sh start", "echo done"]',
      'LAUNCH ["web", "manifests"]',
    ]);
    expect(ins.slice(1)).toEqual([
      { op: 'APP', line: 2, text: 'APP web local://web.sh', name: 'web', sources: ['web.sh'] },
      { op: 'APP', line: 3, text: 'app manifests local://k8s/ "local://more files/x.yaml"', name: 'manifests', sources: ['k8s/', 'more files/x.yaml'] },
      { op: 'APPCMDS', line: 4, text: 'APPCMDS web ["sh web.sh start", "echo done"]', name: 'web', cmds: ['sh web.sh start', 'echo done'] },
      { op: 'LAUNCH', line: 5, text: 'LAUNCH ["web", "manifests"]', apps: ['web', 'manifests'] },
    ]);
    const cmds = parse(['FROM scratch', 'CMD echo a', 'CMDS ["echo b", "echo \\"c\\""]']);
    expect(cmds[2]).toEqual({ op: 'CMDS', line: 3, text: 'CMDS ["echo b", "echo \\"c\\""]', cmds: ['echo b', 'echo "c"'] });
  });

  const cases: { name: string; lines: string[]; line: number; message: RegExp; hint?: RegExp }[] = [
    { name: 'APP without sources', lines: ['FROM scratch', 'APP web'], line: 2, message: /APP: needs a name and at least one source/ },
    { name: 'APP with a bad name', lines: ['FROM scratch', 'APP Web_1 local://x'], line: 2, message: /APP: "Web_1" is not a valid app name/, hint: /DNS label/ },
    { name: 'APP with a name too long', lines: ['FROM scratch', `APP ${'a'.repeat(64)} local://x`], line: 2, message: /is not a valid app name/ },
    {
      name: 'APP from helm://',
      lines: ['FROM scratch', 'APP chart helm://charts.example.com/nginx'],
      line: 2,
      message: /source "helm:\/\/charts.example.com\/nginx" of app chart uses helm:\/\/; only local:\/\/ \(files in the build context\) is supported/,
      hint: /helm pull --untar/,
    },
    { name: 'APP from https://', lines: ['FROM scratch', 'APP x https://example.com/a.yaml'], line: 2, message: /uses https:\/\//, hint: /local:\/\/<path>/ },
    { name: 'APP source without scheme', lines: ['FROM scratch', 'APP x manifests/'], line: 2, message: /source "manifests\/" of app x has no scheme/, hint: /write local:\/\/manifests\// },
    { name: 'APP with an empty local://', lines: ['FROM scratch', 'APP x local://'], line: 2, message: /names no path/ },
    { name: 'APP defined twice', lines: ['FROM scratch', 'APP x local://a', 'APP x local://b'], line: 3, message: /app "x" is already defined at line 2/ },
    { name: 'APPCMDS not JSON', lines: ['FROM scratch', 'APP x local://a', 'APPCMDS x sh run.sh'], line: 3, message: /APPCMDS: needs a JSON array of strings/, hint: /APPCMDS x \["command"/ },
    { name: 'APPCMDS empty list', lines: ['FROM scratch', 'APP x local://a', 'APPCMDS x []'], line: 3, message: /non-empty JSON array/ },
    { name: 'APPCMDS without commands', lines: ['FROM scratch', 'APP x local://a', 'APPCMDS x'], line: 3, message: /needs an app name and a JSON array/ },
    {
      name: 'APPCMDS for an unknown app',
      lines: ['FROM scratch', 'APP x local://a', 'APPCMDS y ["echo"]'],
      line: 3,
      message: /APPCMDS for unknown app "y": no APP y comes before this line/,
      hint: /APP y local:\/\//,
    },
    { name: 'APPCMDS before its APP', lines: ['FROM scratch', 'APPCMDS x ["echo"]', 'APP x local://a'], line: 2, message: /APPCMDS for unknown app "x"/ },
    { name: 'APPCMDS twice', lines: ['FROM scratch', 'APP x local://a', 'APPCMDS x ["a"]', 'APPCMDS x ["b"]'], line: 4, message: /already has its commands at line 3/ },
    { name: 'LAUNCH not JSON', lines: ['FROM scratch', 'APP x local://a', 'LAUNCH x'], line: 3, message: /LAUNCH: needs a JSON array/ },
    { name: 'LAUNCH with an app twice', lines: ['FROM scratch', 'APP x local://a', 'LAUNCH ["x", "x"]'], line: 3, message: /app "x" is listed twice/ },
    { name: 'LAUNCH with a bad name', lines: ['FROM scratch', 'LAUNCH ["../x"]'], line: 2, message: /"\.\.\/x" is not a valid app name/ },
    { name: 'two LAUNCH', lines: ['FROM scratch', 'APP x local://a', 'LAUNCH ["x"]', 'LAUNCH ["x"]'], line: 4, message: /only one LAUNCH is allowed \(the first is at line 3\)/ },
    { name: 'two CMDS', lines: ['FROM scratch', 'CMDS ["a"]', 'CMDS ["b"]'], line: 3, message: /only one CMDS is allowed \(the first is at line 2\)/ },
    {
      name: 'LAUNCH with CMDS',
      lines: ['FROM scratch', 'APP x local://a', 'CMDS ["a"]', 'LAUNCH ["x"]'],
      line: 4,
      message: /LAUNCH cannot be used with CMDS \(CMDS at line 3, LAUNCH at line 4\)/,
      hint: /APPCMDS/,
    },
    { name: 'LAUNCH with CMD', lines: ['FROM scratch', 'CMD echo hi', 'APP x local://a', 'LAUNCH ["x"]'], line: 4, message: /LAUNCH cannot be used with CMD \(CMD at line 2/ },
    { name: 'LAUNCH not last', lines: ['FROM scratch', 'APP x local://a', 'LAUNCH ["x"]', 'LABEL a=b'], line: 3, message: /LAUNCH must be the last instruction, but line 4 \(LABEL\) comes after it/ },
    { name: 'CMDS not last', lines: ['FROM scratch', 'CMDS ["a"]', 'COPY a /a'], line: 2, message: /CMDS must be the last instruction/ },
    { name: 'CMDS not JSON', lines: ['FROM scratch', 'CMDS echo a'], line: 2, message: /CMDS: needs a JSON array/ },
    { name: 'CMDS with an empty command', lines: ['FROM scratch', 'CMDS ["a", " "]'], line: 2, message: /non-empty strings/ },
    {
      name: 'CNI',
      lines: ['FROM scratch', 'CNI calico local://calico/'],
      line: 2,
      message: /CNI: not supported; write it as an app: APP calico local:\/\/calico\/, then launch it with LAUNCH \["calico"\]/,
      hint: /cluster\.alpha\.sealer\.io\/kube-cni-calico="true"/,
    },
    { name: 'CSI', lines: ['FROM scratch', 'CSI openebs local://openebs/'], line: 2, message: /CSI: not supported; write it as an app: APP openebs/, hint: /kube-csi-openebs/ },
    {
      name: 'KUBEVERSION',
      lines: ['FROM scratch', 'KUBEVERSION 1.22 - 1.24'],
      line: 2,
      message: /KUBEVERSION: not supported: cloudimage does not check the Kubernetes version/,
      hint: /LABEL app\.alpha\.sealer\.io\/supported-kube-version="1\.22 - 1\.24"/,
    },
  ];
  for (const c of cases) {
    it(`refuses ${c.name}, naming the line`, () => {
      const err = refusal(c.lines);
      expect(err.location).toEqual({ file: 'Kubefile', line: c.line });
      expect(err.message).toMatch(new RegExp(`^Kubefile:${c.line}: `));
      expect(err.message).toMatch(c.message);
      if (c.hint) expect(err.hint).toMatch(c.hint);
    });
  }

  it('names the new instructions in the hint for an unknown one', () => {
    expect(refusal(['FROM scratch', 'APPENV x a=b']).hint).toMatch(/APP, APPCMDS, LAUNCH, CMDS/);
  });

  it('reports every breach of the whole-file rules with the other errors, each once', () => {
    let err: unknown;
    try {
      parse(['FROM scratch', 'APP a local://a', 'APP a local://b', 'APPCMDS nope ["x"]', 'BOGUS 1', 'LAUNCH ["a"]', 'LAUNCH ["a"]']);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KubefileErrors);
    expect((err as KubefileErrors).errors.map((e) => [e.location.line, e.message.replace(/^Kubefile:\d+: /, '').split(':')[0]])).toEqual([
      [3, 'APP'],
      [4, 'APPCMDS for unknown app "nope"'],
      [5, 'unknown instruction "BOGUS"'],
      [7, 'only one LAUNCH is allowed (the first is at line 6)'],
    ]);
  });
});
