import type { Command } from 'commander';
import {
  DEFAULT_LISTEN, ECS_VERSION, VPC_VERSION, parseEmulatorFlags, startEmulator, type EmulatorEvent, type EmulatorFlags,
  type FaultOptions,
} from '../../../providers/aliyun/emulator/index.js';
import { registerSecret } from '../../kernel/redact.js';
import { EXIT } from '../exit-codes.js';

function describeFaults(f: FaultOptions | undefined, stock: number | undefined): string {
  const parts: string[] = [];
  if (f?.throttling) parts.push(`throttling ${f.throttling}`);
  if (f?.serverError) parts.push(`5xx ${f.serverError}`);
  if (f?.noStock) parts.push(`nostock ${f.noStock}`);
  if (f?.timeoutOnce?.length) parts.push(`timeout-once ${f.timeoutOnce.join(' ')}`);
  if (f?.retryAfterMs !== undefined) parts.push(`retry-after ${f.retryAfterMs} ms`);
  if (stock !== undefined) parts.push(`stock ${stock}`);
  if (f?.seed !== undefined) parts.push(`seed ${f.seed}`);
  return parts.length > 0 ? parts.join(', ') : 'none';
}

function printEvent(e: EmulatorEvent): void {
  const time = new Date().toISOString().slice(11, 19);
  if (e.type === 'warning') process.stderr.write(`${time} warning: ${e.message}\n`);
  else process.stdout.write(`${time} ${e.message}\n`);
}

function nextSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (s: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(s);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

export function register(program: Command): void {
  const emulator = program.command('emulator').description('run an offline emulator of a cloud API, to try a cloud provider without an account');
  emulator
    .command('aliyun')
    .description(`emulate Alibaba Cloud ECS (${ECS_VERSION}) and VPC (${VPC_VERSION}) for the official SDK; instances are local hosts (needs root)`)
    .option('--listen <host:port>', 'address to serve on (port 0: any free port)', DEFAULT_LISTEN)
    .option('--access-key-id <id>', 'the one access key it accepts (default: $ALIBABA_CLOUD_ACCESS_KEY_ID)')
    .option('--access-key-secret <secret>', 'its secret (default: $ALIBABA_CLOUD_ACCESS_KEY_SECRET; arguments are visible to other users)')
    .option('--latency <profile>', 'fast (tenths of a second) or realistic (instances take 10-30 s)', 'realistic')
    .option('--faults <list>', 'e.g. throttling=0.3,5xx=0.05,timeout-once=RunInstances,nostock=0.1,retry-after=2000,stock=5,seed=7')
    .option('--data <dir>', 'where resources and instance hosts are kept (default: $CI_HOME/emulators/aliyun)')
    .option('--instance-kind <kind>', 'light or systemd local hosts', 'light')
    .option('--reset', 'release every instance host and empty the data before starting')
    .action(async (flags: EmulatorFlags) => {
      registerSecret(flags.accessKeySecret ?? process.env.ALIBABA_CLOUD_ACCESS_KEY_SECRET);
      const opts = parseEmulatorFlags(flags);
      const running = await startEmulator({ ...opts, onEvent: printEvent });
      const out = process.stdout;
      out.write(`Aliyun API emulator (ECS ${ECS_VERSION}, VPC ${VPC_VERSION})\n`);
      out.write(`  endpoint:      ${running.endpoint} (protocol http)\n`);
      out.write(`  access key id: ${opts.accessKeyId}\n`);
      out.write(`  data:          ${running.dataDir}\n`);
      out.write(`  latency:       ${opts.latency}\n`);
      out.write(`  faults:        ${describeFaults(opts.faults, opts.stock)}\n`);
      if (!['127.0.0.1', '::1', 'localhost'].includes(opts.host)) {
        process.stderr.write(`warning: serving on ${opts.host}: whoever reaches it with the access key makes hosts on this machine as root\n`);
      }
      out.write('Ctrl-C stops it; resources and instance hosts are kept for the next start (--reset starts empty).\n');
      const signal = await nextSignal();
      out.write(`${signal === 'SIGINT' ? '\n' : ''}stopping (Ctrl-C again to quit at once)\n`);
      const again = () => process.exit(EXIT.interrupted);
      process.once('SIGINT', again);
      try {
        await running.stop();
      } finally {
        process.off('SIGINT', again);
      }
      out.write(`stopped; resources and hosts kept in ${running.dataDir}\n`);
    });
}
