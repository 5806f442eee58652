/**
 * The rules that decide whether a state may work on a host (pure), and how a refusal reaches the user in the
 * summary of a failed apply. The same rules run on real hosts in e2e-identity.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { judgeMark, markScript, parseMark, stateKnowsHost } from '../engine/executor/host-claim.js';
import { HostClaimedError, RemoteCommandError } from '../engine/kernel/errors.js';
import { renderSummary } from '../engine/cli/progress.js';
import type { ExecuteResult } from '../engine/executor/executor.js';
import type { Action } from '../plans/actions.js';
import { createState } from '../state/local.js';
import type { HostState } from '../state/model.js';

const L = '11111111-1111-4111-8111-111111111111';
const OTHER = '22222222-2222-4222-8222-222222222222';

describe('host marks', () => {
  it('parses what the mark script prints, ignoring anything else on the output', () => {
    expect(parseMark('motd line\n__ci_mark__ none\n')).toEqual({ kind: 'none' });
    expect(parseMark('__ci_mark__ unmarked\n')).toEqual({ kind: 'unmarked' });
    expect(parseMark(`__ci_mark__ marked ${L}\n`)).toEqual({ kind: 'marked', lineage: L });
    expect(parseMark('__ci_mark__ marked \n')).toEqual({ kind: 'marked', lineage: '' });
    expect(parseMark('nothing\n')).toBeUndefined();
  });

  it('lets a state work only on hosts with none of the cluster, its own mark, or its own unmarked files', () => {
    const cases: [Parameters<typeof judgeMark>[2], string | undefined, boolean, boolean][] = [
      [{ kind: 'none' }, L, false, true],
      [{ kind: 'none' }, undefined, false, true],
      [{ kind: 'marked', lineage: L }, L, false, true],
      [{ kind: 'marked', lineage: OTHER }, L, true, false],
      [{ kind: 'marked', lineage: L }, undefined, false, false],
      [{ kind: 'unmarked' }, L, true, true],
      [{ kind: 'unmarked' }, L, false, false],
      [{ kind: 'unmarked' }, undefined, false, false],
    ];
    for (const [mark, lineage, known, allowed] of cases) {
      const r = judgeMark('root@10.0.0.2:22', 'demo', mark, lineage, known);
      expect(r === undefined, JSON.stringify({ mark, lineage, known })).toBe(allowed);
      if (r) {
        expect(r).toBeInstanceOf(HostClaimedError);
        expect(r.code).toBe('HOST_CLAIMED');
        expect(r.message).toMatch(/^root@10\.0\.0\.2:22: holds files of cluster demo/);
        expect(r.hint).toContain('ci state restore');
        expect(r.hint).toContain('/var/lib/cloudimage/clusters/demo');
      }
    }
    expect(judgeMark('h', 'demo', { kind: 'marked', lineage: OTHER }, L, true)!.message).toContain(`another state (lineage ${OTHER}), not to this state (lineage ${L})`);
  });

  it('counts a host as known to the state only once the state has worked on it', () => {
    const bare: HostState = { key: 'k', ip: '10.0.0.2', roles: ['master'], ssh: { user: 'root', port: 22 }, layers: [], hooks: {}, status: 'creating' };
    expect(stateKnowsHost(undefined)).toBe(false);
    expect(stateKnowsHost(bare)).toBe(false);
    expect(stateKnowsHost({ ...bare, hostKey: 'SHA256:x' })).toBe(true);
    expect(stateKnowsHost({ ...bare, layers: ['sha256:a' as never] })).toBe(true);
    expect(stateKnowsHost({ ...bare, hooks: { 'init-host': 'sha256:a' as never } })).toBe(true);
  });

  it('writes only inside the cluster directory, and only when claiming', () => {
    const probe = markScript('demo');
    expect(probe).not.toMatch(/mkdir|>/);
    const claim = markScript('demo', { lineage: L, adopt: false });
    const writes = [...claim.matchAll(/(?:mkdir -p |> )"?\$(\w)"?/g)].map((m) => m[1]);
    expect(writes).toEqual(['d', 'm']);
    expect(claim).toContain("d='/var/lib/cloudimage/clusters/demo'");
    expect(claim).toContain("m='/var/lib/cloudimage/clusters/demo/lineage'");
  });
});

describe('summary of a failed apply', () => {
  const action = (id: string, host: string): Action => ({ id, kind: 'hook', host, hook: 'init-host', image: 'sha256:aa' as never, reason: 'new host', deps: [] });

  it('prints each failure\'s hint under it', () => {
    const refused = judgeMark('root@10.0.0.2:22', 'demo', { kind: 'marked', lineage: OTHER }, L, true)!;
    const result: ExecuteResult = {
      completed: [],
      failed: [
        { action: action('hook:init-host:10.0.0.2', '10.0.0.2'), error: refused },
        { action: action('hook:init-host:10.0.0.3', '10.0.0.3'), error: new RemoteCommandError('root@10.0.0.3:22', 'hook init-host', 1, 'boom') },
      ],
      skipped: [],
      interrupted: false,
      state: createState('demo', 'BAREMETAL'),
      bytesSent: new Map(),
      uplinkBytes: 0,
    };
    const lines = renderSummary(result, 'Apply').split('\n');
    const at = lines.findIndex((l) => l.startsWith('  failed: 10.0.0.2: hook init-host: root@10.0.0.2:22: holds files of cluster demo'));
    expect(at, lines.join('\n')).toBeGreaterThan(0);
    expect(lines[at + 1]).toBe(`    hint: ${refused.hint}`);
    const second = lines.findIndex((l) => l.startsWith('  failed: 10.0.0.3:'));
    // An error without a hint gets no hint line.
    expect(lines.slice(second).some((l) => l.startsWith('    hint:'))).toBe(false);
  });
});
