/**
 * sealer's application instructions: `APP`, `APPCMDS`, `LAUNCH`, `CMDS`, and the legacy `CNI`, `CSI` and
 * `KUBEVERSION` that are refused with the way to write them now. Parsing of one line is here; so are the rules that
 * need the whole file (one LAUNCH, APPCMDS after its APP, LAUNCH and CMDS never together and always last).
 */
import { KubefileError } from '../kernel/errors.js';
import type { Instruction } from './kubefile.js';

/** Instructions sealer once had and cloudimage refuses with advice. */
export const LEGACY_OPS = ['CNI', 'CSI', 'KUBEVERSION'] as const;

/** An app's name: a DNS label, since it names a folder, a Helm release and a plan step. */
export const APP_NAME_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

const SCHEME = 'local://';

export interface LineHelpers {
  splitWords(s: string): string[];
  problem(message: string, hint?: string): Error;
}

function checkAppName(name: string, h: LineHelpers): void {
  if (!APP_NAME_RE.test(name)) {
    throw h.problem(
      `"${name}" is not a valid app name`,
      'use lower-case letters, digits and -, starting and ending with a letter or digit, at most 63 characters (like a DNS label)',
    );
  }
}

/** A non-empty JSON array of non-empty strings, the only form these instructions take. */
function stringArray(args: string, form: string, h: LineHelpers): string[] {
  let arr: unknown;
  try {
    arr = JSON.parse(args.trim());
  } catch {
    throw h.problem('needs a JSON array of strings', `write ${form}, with double quotes and commas`);
  }
  if (!Array.isArray(arr) || arr.length === 0 || !arr.every((x) => typeof x === 'string' && x.trim() !== '')) {
    throw h.problem('needs a non-empty JSON array of non-empty strings', `write ${form}`);
  }
  return arr as string[];
}

function appSource(name: string, src: string, h: LineHelpers): string {
  if (src.startsWith(SCHEME)) {
    const path = src.slice(SCHEME.length);
    if (!path) throw h.problem(`source "${src}" names no path`, `write ${SCHEME}<path in the build context>`);
    return path;
  }
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(src)?.[1];
  if (scheme) {
    throw h.problem(
      `source "${src}" of app ${name} uses ${scheme}://; only ${SCHEME} (files in the build context) is supported`,
      `fetch it into the build context first (a chart with \`helm pull --untar\`, a file with curl), then write ${SCHEME}<path>`,
    );
  }
  throw h.problem(`source "${src}" of app ${name} has no scheme`, `write ${SCHEME}${src} for a path in the build context`);
}

function legacy(op: string, args: string, h: LineHelpers): never {
  if (op === 'KUBEVERSION') {
    throw h.problem(
      'not supported: cloudimage does not check the Kubernetes version an image needs',
      `record the range as a label instead: LABEL app.alpha.sealer.io/supported-kube-version="${args}"`,
    );
  }
  const words = h.splitWords(args);
  const kind = op.toLowerCase();
  const name = words[0] ?? '<name>';
  const sources = words.slice(1).join(' ') || `${SCHEME}<path>`;
  throw h.problem(
    `not supported; write it as an app: APP ${name} ${sources}, then launch it with LAUNCH ["${name}"]`,
    `sealer also labelled it; add LABEL cluster.alpha.sealer.io/kube-${kind}-${name}="true" if something reads that label`,
  );
}

export function parseAppInstruction(op: string, args: string, line: number, text: string, h: LineHelpers): Instruction {
  switch (op) {
    case 'CMDS':
      return { op, line, text, cmds: stringArray(args, 'CMDS ["command", "another command"]', h) };
    case 'LAUNCH': {
      const apps = stringArray(args, 'LAUNCH ["app", "another-app"]', h);
      for (const a of apps) checkAppName(a, h);
      const twice = apps.find((a, i) => apps.indexOf(a) !== i);
      if (twice) throw h.problem(`app "${twice}" is listed twice`, 'list each app once, in the order they run');
      return { op, line, text, apps };
    }
    case 'APP': {
      const words = h.splitWords(args);
      if (words.length < 2) throw h.problem('needs a name and at least one source: APP name local://path...', 'write APP my-app local://path/in/context');
      checkAppName(words[0], h);
      return { op, line, text, name: words[0], sources: words.slice(1).map((s) => appSource(words[0], s, h)) };
    }
    case 'APPCMDS': {
      const m = /^(\S+)\s+([\s\S]+)$/.exec(args);
      if (!m) throw h.problem('needs an app name and a JSON array of commands', 'write APPCMDS my-app ["command", "another command"]');
      checkAppName(m[1], h);
      return { op, line, text, name: m[1], cmds: stringArray(m[2], `APPCMDS ${m[1]} ["command", "another command"]`, h) };
    }
    case 'CNI':
    case 'CSI':
    case 'KUBEVERSION':
      return legacy(op, args, h);
  }
  throw new Error(`unknown instruction ${op}`);
}

/** The rules that span lines, as sealer has them: every breach, each at its line. */
export function checkApplications(instructions: Instruction[], file: string): KubefileError[] {
  const problems: KubefileError[] = [];
  const at = (i: Instruction) => ({ file, line: i.line });
  const apps = new Map<string, number>();
  const appCmds = new Map<string, number>();
  let cmds: Instruction | undefined;
  let launch: Instruction | undefined;
  let cmd: Instruction | undefined;
  for (const ins of instructions) {
    if (ins.op === 'APP') {
      const first = apps.get(ins.name);
      if (first !== undefined) problems.push(new KubefileError(at(ins), `APP: app "${ins.name}" is already defined at line ${first}`, 'give each app its own name'));
      else apps.set(ins.name, ins.line);
    } else if (ins.op === 'APPCMDS') {
      const first = appCmds.get(ins.name);
      if (!apps.has(ins.name)) {
        problems.push(new KubefileError(at(ins), `APPCMDS for unknown app "${ins.name}": no APP ${ins.name} comes before this line`, `define it first with APP ${ins.name} local://<path>, or correct the name`));
      } else if (first !== undefined) {
        problems.push(new KubefileError(at(ins), `APPCMDS: app "${ins.name}" already has its commands at line ${first}`, 'put all of its commands in one APPCMDS'));
      } else appCmds.set(ins.name, ins.line);
    } else if (ins.op === 'CMDS' || ins.op === 'LAUNCH') {
      const earlier = ins.op === 'CMDS' ? cmds : launch;
      if (earlier) problems.push(new KubefileError(at(ins), `only one ${ins.op} is allowed (the first is at line ${earlier.line})`, `merge them into one ${ins.op} list`));
      else if (ins.op === 'CMDS') cmds = ins;
      else launch = ins;
    } else if (ins.op === 'CMD') cmd ??= ins;
  }
  if (launch && (cmds || cmd)) {
    const other = (cmds ?? cmd)!;
    const later = other.line > launch.line ? other : launch;
    problems.push(new KubefileError(
      at(later),
      `LAUNCH cannot be used with ${other.op} (${other.op} at line ${other.line}, LAUNCH at line ${launch.line}): an image either launches apps or runs commands`,
      'run the commands as an app (APP with APPCMDS, listed in LAUNCH), or drop LAUNCH and use CMDS',
    ));
  }
  const last = instructions[instructions.length - 1];
  // Only LAUNCH, CMDS or CMD after it: the line that follows is already blamed above, not this one again.
  const blamedAfter = (ins: Instruction) =>
    problems.length > 0 && instructions.slice(instructions.indexOf(ins) + 1).every((i) => i.op === 'LAUNCH' || i.op === 'CMDS' || i.op === 'CMD');
  for (const ins of [launch, cmds]) {
    if (ins && ins !== last && !blamedAfter(ins)) {
      problems.push(new KubefileError(at(ins), `${ins.op} must be the last instruction, but line ${last.line} (${last.op}) comes after it`, `move ${ins.op} to the end of the Kubefile`));
    }
  }
  return problems;
}
