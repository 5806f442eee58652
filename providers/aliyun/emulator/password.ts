/**
 * Instance passwords: checked as ECS checks them, and kept only as a SHA-512 crypt(3) hash (what the instance's
 * /etc/shadow holds). The clear password goes to `openssl passwd` over standard input, never on a command line.
 */
import { spawn } from 'node:child_process';
import { errors } from './api-errors.js';

const SPECIALS = "()`~!@#$%^&*-_+=|{}[]:;'<>,.?/";

/** 8-30 characters, at least three of: upper case, lower case, digits, specials (the ECS rule). */
export function checkPassword(pw: string): void {
  if (pw.length < 8 || pw.length > 30) throw errors.password();
  let classes = 0;
  if (/[A-Z]/.test(pw)) classes++;
  if (/[a-z]/.test(pw)) classes++;
  if (/[0-9]/.test(pw)) classes++;
  if ([...pw].some((c) => SPECIALS.includes(c))) classes++;
  const allowed = [...pw].every((c) => /[A-Za-z0-9]/.test(c) || SPECIALS.includes(c));
  if (classes < 3 || !allowed) throw errors.password();
}

export function hashPassword(pw: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', ['passwd', '-6', '-stdin'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
    child.stderr.on('data', (b: Buffer) => (err += b.toString('utf8')));
    child.on('error', (e) => reject(new Error(`cannot run openssl to hash an instance password: ${e.message}`)));
    child.on('close', (code) => {
      const hash = out.trim();
      if (code === 0 && hash.startsWith('$6$')) resolve(hash);
      else reject(new Error(`openssl passwd failed (${code ?? 'signal'}): ${err.trim()}`));
    });
    child.stdin.end(pw + '\n');
  });
}
