import { describe, expect, it } from 'vitest';
import { expandVars, parseKubefile } from '../engine/image/kubefile.js';
import { KubefileError, KubefileErrors } from '../engine/kernel/errors.js';

describe('Kubefile parser', () => {
  it('parses every instruction, continuations, comments and JSON forms', () => {
    const src = [
      '# a comment',
      'ARG BASE=scratch',
      'FROM ${BASE}',
      'ENV A=1 B="two words" \\',
      '    C=3',
      'ENV LEGACY value with spaces',
      'LABEL org.example/team=infra "quoted key"=v',
      'COPY a.txt "b c.txt" /opt/app/',
      'RUN echo one \\',
      '  # comment inside a continuation',
      '  && echo two',
      'RUN ["/bin/echo", "exec form"]',
      'CMD ["sh", "-c", "echo hi"]',
      'cmd echo lower-case keyword',
    ].join('\n');
    const ins = parseKubefile(src, 'Kubefile');
    expect(ins.map((i) => [i.op, i.line])).toEqual([
      ['ARG', 2],
      ['FROM', 3],
      ['ENV', 4],
      ['ENV', 6],
      ['LABEL', 7],
      ['COPY', 8],
      ['RUN', 9],
      ['RUN', 12],
      ['CMD', 13],
      ['CMD', 14],
    ]);
    expect(ins[2]).toMatchObject({ pairs: [['A', '1'], ['B', 'two words'], ['C', '3']] });
    expect(ins[3]).toMatchObject({ pairs: [['LEGACY', 'value with spaces']] });
    expect(ins[4]).toMatchObject({ pairs: [['org.example/team', 'infra'], ['quoted key', 'v']] });
    expect(ins[5]).toMatchObject({ sources: ['a.txt', 'b c.txt'], dest: '/opt/app/' });
    expect(ins[6]).toMatchObject({ shell: 'echo one    && echo two' });
    expect(ins[7]).toMatchObject({ exec: ['/bin/echo', 'exec form'] });
    expect(ins[8]).toMatchObject({ exec: ['sh', '-c', 'echo hi'] });
  });

  const bad: [string, string, RegExp][] = [
    ['unknown instruction', 'FROM scratch\nWORKDIR /x', /Kubefile:2: unknown instruction "WORKDIR"/],
    ['missing FROM', 'RUN true', /Kubefile:1: the first instruction must be FROM/],
    ['bad ARG name', 'FROM scratch\nARG 1abc=x', /Kubefile:2: ARG: "1abc" is not a valid argument name/],
    ['ARG with two words', 'FROM scratch\nARG a b', /Kubefile:2: ARG: takes one name/],
    ['COPY with one word', 'FROM scratch\nCOPY onlyone', /Kubefile:2: COPY: needs at least one source/],
    ['COPY --from', 'FROM scratch\nCOPY --from=build a b', /Kubefile:2: COPY: option --from is not supported/],
    ['COPY unknown flag', 'FROM scratch\nADD --checksum=sha256:x a b', /Kubefile:2: ADD: option --checksum is not supported/],
    ['COPY flag without value', 'FROM scratch\nCOPY --chown a b', /Kubefile:2: COPY: --chown needs a value/],
    ['COPY flag twice', 'FROM scratch\nCOPY --chmod=600 --chmod=644 a b', /Kubefile:2: COPY: --chmod is given twice/],
    ['COPY flag after a source', 'FROM scratch\nCOPY a --chown=1 b', /Kubefile:2: COPY: option --chown=1 must come before the sources/],
    ['empty RUN', 'FROM scratch\nRUN', /Kubefile:2: RUN needs arguments/],
    ['bad JSON form', 'FROM scratch\nCMD []', /Kubefile:2: CMD: the JSON form must be a non-empty array/],
    ['ENV without value', 'FROM scratch\nENV A', /Kubefile:2: ENV: "A" needs a value/],
    ['two FROMs', 'FROM scratch\nFROM scratch', /Kubefile:2: only one FROM/],
    ['empty file', '# nothing\n', /Kubefile: the Kubefile has no instructions/],
    ['unterminated quote', 'FROM scratch\nLABEL a="b', /Kubefile:2: LABEL: unterminated " quote/],
    ['unterminated JSON CMD', 'FROM scratch\nCMD ["a", "b"', /^Kubefile:2: CMD: the arguments start like the JSON form but have no closing \]$/],
    ['unterminated JSON RUN', 'FROM scratch\nRUN ["x"', /^Kubefile:2: RUN: the arguments start like the JSON form but have no closing \]$/],
    ['unterminated JSON with a space', 'FROM scratch\nCMD [ "sh", "-c", "x"', /^Kubefile:2: CMD: .* have no closing \]$/],
    ['JSON without commas', 'FROM scratch\nCMD ["a" "b"]', /^Kubefile:2: CMD: the arguments start like the JSON form but are not valid JSON$/],
    ['JSON with single quotes', "FROM scratch\nCMD [ 'a', 'b' ]", /^Kubefile:2: CMD: .* are not valid JSON$/],
    ['JSON of numbers', 'FROM scratch\nCMD ["a", 1]', /^Kubefile:2: CMD: the JSON form must be a non-empty array of strings$/],
    ['broken COPY JSON', 'FROM scratch\nCOPY ["a", "b"', /^Kubefile:2: COPY: the arguments start like the JSON form but have no closing \]$/],
    ['COPY JSON of numbers', 'FROM scratch\nCOPY [1, 2]', /^Kubefile:2: COPY: the JSON form must be a non-empty array of strings$/],
    ['trailing continuation', 'FROM scratch\nRUN echo a \\\n  && echo b \\\n', /^Kubefile:3: the line ends with \\ \(continued on the next line\), but nothing follows it$/],
    ['continuation into comments only', 'FROM scratch\nRUN echo a \\\n# the end\n\n', /^Kubefile:2: the line ends with \\/],
  ];
  it.each(bad)('rejects %s with file:line', (_name, src, re) => {
    let err: unknown;
    try {
      parseKubefile(src, 'Kubefile');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KubefileError);
    expect((err as Error).message).toMatch(re);
  });

  it('a broken JSON form says how to write it', () => {
    const err = (() => {
      try {
        parseKubefile('FROM scratch\nCMD ["a", "b"', 'Kubefile');
      } catch (e) {
        return e as KubefileError;
      }
    })();
    expect(err?.hint).toBe('write CMD ["executable", "arg"] with double quotes, commas and a closing ], or leave the brackets out for the shell form');
  });

  it('takes lines that start with [ but are not JSON-like as shell commands, and COPY of a [glob]', () => {
    const ins = parseKubefile(
      ['FROM scratch', 'RUN [ -f x ] && y', 'RUN [ "$A" = b ]', 'RUN [ "$A" ] && echo set', 'RUN [[ -n "$A" ]]', 'CMD [ -x /bin/app ] || exit 1', 'COPY [ab].txt /opt/', 'COPY ["a b.txt", "/opt/x y/"]', 'RUN [ "$A" ]'].join('\n'),
      'Kubefile',
    );
    expect(ins.slice(1).map((i) => (i.op === 'COPY' ? { sources: i.sources, dest: i.dest } : 'exec' in i && i.exec ? { exec: i.exec } : { shell: (i as { shell?: string }).shell }))).toEqual([
      { shell: '[ -f x ] && y' },
      { shell: '[ "$A" = b ]' },
      { shell: '[ "$A" ] && echo set' },
      { shell: '[[ -n "$A" ]]' },
      { shell: '[ -x /bin/app ] || exit 1' },
      { sources: ['[ab].txt'], dest: '/opt/' },
      { sources: ['a b.txt'], dest: '/opt/x y/' },
      // Valid JSON is the exec form, as in Docker.
      { exec: ['$A'] },
    ]);
  });

  it('reads --chown and --chmod of COPY and ADD before the sources, in both forms', () => {
    const ins = parseKubefile(
      ['FROM scratch', 'COPY --chown=app:app --chmod=0644 a b /opt/', 'add --chown=${OWNER} ["x y.tgz", "/opt/"]', 'ADD c .', 'COPY --chmod="755" d e'].join('\n'),
      'Kubefile',
    );
    expect(ins.slice(1)).toEqual([
      { op: 'COPY', line: 2, text: 'COPY --chown=app:app --chmod=0644 a b /opt/', chown: 'app:app', chmod: '0644', sources: ['a', 'b'], dest: '/opt/' },
      { op: 'ADD', line: 3, text: 'add --chown=${OWNER} ["x y.tgz", "/opt/"]', chown: '${OWNER}', sources: ['x y.tgz'], dest: '/opt/' },
      { op: 'ADD', line: 4, text: 'ADD c .', sources: ['c'], dest: '.' },
      { op: 'COPY', line: 5, text: 'COPY --chmod="755" d e', chmod: '755', sources: ['d'], dest: 'e' },
    ]);
  });

  it('expands variables with defaults and escapes', () => {
    expect(expandVars('${A}-$B-${C:-dflt}-\\$A', { A: 'x', B: 'y' })).toBe('x-y-dflt-$A');
  });
  it('reports every broken line of a file, each at its own line, in file order', () => {
    const src = [
      'FROM scratch', // 1
      'EXPOSE 80', // 2
      'ENV 1BAD=x', // 3
      'RUN echo fine', // 4
      'ARG =oops', // 5
      '', // 6
      'CMD ["a" "b"]', // 7
      'LABEL "unterminated', // 8
      'FROM scratch', // 9
      'COPY a \\', // 10 (continued into nothing)
    ].join('\n');
    let err: unknown;
    try {
      parseKubefile(src, 'Kubefile');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KubefileErrors);
    const all = (err as KubefileErrors).errors;
    expect(all.every((e) => e instanceof KubefileError)).toBe(true);
    expect(all.map((e) => e.location.line)).toEqual([2, 3, 5, 7, 8, 9, 10]);
    expect(all.map((e) => e.message)).toEqual([
      'Kubefile:2: unknown instruction "EXPOSE"',
      'Kubefile:3: ENV: "1BAD" is not a valid variable name',
      'Kubefile:5: ARG: "" is not a valid argument name (letters, digits and _, not starting with a digit)',
      'Kubefile:7: CMD: the arguments start like the JSON form but are not valid JSON',
      'Kubefile:8: LABEL: unterminated " quote',
      'Kubefile:9: only one FROM is allowed (multi-stage builds are not supported)',
      'Kubefile:10: the line ends with \\ (continued on the next line), but nothing follows it',
    ]);
    expect(all[0].hint).toBe('use one of FROM, COPY, ADD, RUN, CMD, ENV, ARG, LABEL, APP, APPCMDS, LAUNCH, CMDS');
    expect((err as KubefileErrors).message.split('\n')[0]).toBe('7 errors in Kubefile; nothing was built');
  });

  it('a single problem is thrown as itself, and a broken first line is not also blamed for the missing FROM', () => {
    const one = (() => {
      try {
        parseKubefile('FORM scratch\nRUN echo hi\n', 'Kubefile');
      } catch (e) {
        return e;
      }
    })();
    expect(one).toBeInstanceOf(KubefileError);
    expect((one as Error).message).toBe('Kubefile:1: unknown instruction "FORM"');
  });
});
