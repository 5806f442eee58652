import type { Command } from 'commander';
import { join, resolve } from 'node:path';
import { buildImage } from '../../image/build.js';
import { hostPlatform, parsePlatform, formatPlatform } from '../../image/platform.js';
import { ImageStore } from '../../image/store.js';
import { UsageError } from '../../kernel/errors.js';
import { registryBaseSource } from '../ensure-image.js';

/** A repeatable `--flag key=value`, collected into one record (a later value of a key replaces an earlier one). */
function keyValue(flag: string, what: string) {
  return (value: string, prev: Record<string, string> | undefined): Record<string, string> => {
    const eq = value.indexOf('=');
    if (eq <= 0) throw new UsageError(`${flag} "${value}" must be ${what}=value`);
    return { ...(prev ?? {}), [value.slice(0, eq)]: value.slice(eq + 1) };
  };
}

interface BuildFlags {
  file?: string;
  tag: string;
  buildArg?: Record<string, string>;
  label?: Record<string, string>;
  annotation?: Record<string, string>;
  platform?: string;
  pull?: boolean;
  insecure?: boolean;
  caFile?: string;
  cache: boolean;
  allowSetuid?: boolean;
  quiet?: boolean;
}

export function register(program: Command): void {
  program
    .command('build')
    .description('build a CloudImage from a Kubefile; a FROM image missing from the store is pulled from its registry')
    .argument('[context]', 'build context directory', '.')
    .option('-f, --file <Kubefile>', 'path to the Kubefile (default: <context>/Kubefile)')
    .requiredOption('-t, --tag <name:tag>', 'name of the image to build')
    .option('--build-arg <name=value>', 'set a build argument (repeatable)', keyValue('--build-arg', 'name'))
    .option('--platform <os/arch[/variant]>', `platform of the image; sets TARGETOS, TARGETARCH, TARGETVARIANT, TARGETPLATFORM and ARCH (default: ${formatPlatform(hostPlatform())})`)
    .option('--label <key=value>', 'add or replace an image label (repeatable)', keyValue('--label', 'key'))
    .option('--annotation <key=value>', 'add an annotation to the image manifest (repeatable)', keyValue('--annotation', 'key'))
    .option('--pull', 'fetch the FROM image from its registry even when the store has it')
    .option('--ca-file <path>', 'PEM file of the CA that signed the certificate of the FROM image registry')
    .option('--insecure', 'the FROM image registry speaks plain HTTP')
    .option('--no-cache', 'rebuild every layer')
    .option('--allow-setuid', "keep set-user-ID and set-group-ID bits of the image's files on hosts (stripped otherwise)")
    .option('-q, --quiet', 'print only the image digest')
    .action(async (context: string, o: BuildFlags) => {
      const store = new ImageStore();
      const log = (line: string) => {
        if (!o.quiet) process.stderr.write(line + '\n');
      };
      const result = await buildImage(store, {
        kubefile: o.file ?? join(context, 'Kubefile'),
        context: resolve(context),
        tag: o.tag,
        buildArgs: o.buildArg,
        platform: o.platform === undefined ? undefined : parsePlatform(o.platform),
        pull: !!o.pull,
        baseSource: registryBaseSource(store, { insecure: o.insecure, caFile: o.caFile }),
        labels: o.label,
        annotations: o.annotation,
        noCache: !o.cache,
        allowSetid: !!o.allowSetuid,
        onProgress: log,
        onRunOutput: (chunk) => {
          if (!o.quiet) process.stderr.write(chunk);
        },
      });
      if (o.quiet) process.stdout.write(result.digest + '\n');
      else process.stdout.write(`Successfully built ${result.ref} ${result.digest}\n`);
    });
}
