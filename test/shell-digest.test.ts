import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SHA256_OF_STDIN } from '../providers/ssh/shell.js';

const which = (tool: string) => execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();

describe('the hosts\' SHA-256 of stdin', () => {
  const data = randomBytes(300_000);
  const want = createHash('sha256').update(data).digest('hex');

  it('gives the hex digest with openssl, fed by a pipe or by a redirection after it', () => {
    expect(execFileSync('sh', ['-c', `cat | ${SHA256_OF_STDIN}`], { input: data, encoding: 'utf8' })).toBe(`${want}\n`);
    const dir = mkdtempSync(join(tmpdir(), 'ci-digest-'));
    try {
      execFileSync('sh', ['-c', `cat > ${dir}/f`], { input: data });
      expect(execFileSync('sh', ['-c', `${SHA256_OF_STDIN} < ${dir}/f`], { encoding: 'utf8' })).toBe(`${want}\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('falls back to sha256sum on a host without openssl', () => {
    const bin = mkdtempSync(join(tmpdir(), 'ci-digest-bin-'));
    try {
      for (const tool of ['sha256sum', 'cut', 'cat']) symlinkSync(which(tool), join(bin, tool));
      const out = execFileSync(which('sh'), ['-c', `command -v openssl || echo none; ${SHA256_OF_STDIN}`], { input: data, encoding: 'utf8', env: { PATH: bin } });
      expect(out).toBe(`none\n${want}\n`);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });
});
