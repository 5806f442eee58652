import type { Command } from 'commander';
import { join, resolve } from 'node:path';
import { buildImage } from '../../image/build.js';
import { ImageStore } from '../../image/store.js';
import { UsageError } from '../../kernel/errors.js';

function collectArg(value: string, prev: Record<string, string>): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new UsageError(`--build-arg "${value}" must be name=value`);
  return { ...prev, [value.slice(0, eq)]: value.slice(eq + 1) };
}

export function register(program: Command): void {
  program
    .command('build')
    .description('build a CloudImage from a Kubefile')
    .argument('[context]', 'build context directory', '.')
    .option('-f, --file <Kubefile>', 'path to the Kubefile (default: <context>/Kubefile)')
    .requiredOption('-t, --tag <name:tag>', 'name of the image to build')
    .option('--build-arg <name=value>', 'set a build argument (repeatable)', collectArg, {})
    .option('--no-cache', 'rebuild every layer')
    .option('--allow-setuid', "keep set-user-ID and set-group-ID bits of the image's files on hosts (stripped otherwise)")
    .option('-q, --quiet', 'print only the image digest')
    .action(async (context: string, o: { file?: string; tag: string; buildArg: Record<string, string>; cache: boolean; allowSetuid?: boolean; quiet?: boolean }) => {
      const store = new ImageStore();
      const log = (line: string) => {
        if (!o.quiet) process.stderr.write(line + '\n');
      };
      const result = await buildImage(store, {
        kubefile: o.file ?? join(context, 'Kubefile'),
        context: resolve(context),
        tag: o.tag,
        buildArgs: o.buildArg,
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
