// Agent memory with 1,000 VM taps (target <= 100 MB). The real agent (real
// eBPF sensor attached to 1,000 real tap devices, real Redis, real spool and
// periods); only libvirt is a stand-in, because 1,000 QEMU guests cannot run
// here: it lists 1,000 running domains whose taps are those devices.
//   node dist/test/bench/agent.js [TAPS] [--write-docs]   (--write-docs: also into docs/measurements.md, block `agent`)
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, type DomainSource } from '../../src/agent/agent.js';
import { AGENT_NODE_FLAGS, loadConfig } from '../../src/agent/config.js';
import type { DomainSnapshot } from '../../src/libvirt/client.js';
import { run, sleep, waitFor } from '../../src/util/exec.js';
import { uniqueName } from '../helpers/names.js';
import { TestRedis } from '../helpers/redis.js';
import { benchArgs, maybeWriteBlock } from './doc.js';

const tapName = (i: number) => `vcb${i}`;

function fakeDomains(n: number): DomainSnapshot[] {
  return Array.from({ length: n }, (_, i) => {
    const hex = (i + 1).toString(16).padStart(8, '0');
    return {
      name: `bench-vm${i}`,
      pinned: false,
      optOut: false,
      uuid: `${hex}-0000-4000-8000-000000000000`,
      state: 'running' as const,
      memoryKiB: 1 << 20,
      vcpus: 1,
      interfaces: [{ mac: `52:54:00:${hex.slice(2, 4)}:${hex.slice(4, 6)}:${hex.slice(6, 8)}`, tap: tapName(i), addresses: [] }],
    };
  });
}

async function child(taps: number, redisUrl: string, stateDir: string, pinRoot: string): Promise<void> {
  const domains = fakeDomains(taps);
  const source: DomainSource = {
    domains: async () => domains,
    node: async () => ({ hostname: 'bench', cpus: 64, memoryKiB: 512 << 20, mhz: 2000 }),
    close: async () => undefined,
  };
  const cfg = loadConfig(undefined, { host: 'bench', redis: redisUrl, stateDir, pinRoot, socket: join(stateDir, 'agent.sock'), sensor: 'ebpf', periodSeconds: 5, reconcileSeconds: 5 });
  const agent = await Agent.start(cfg, async () => source);
  const t0 = Date.now();
  await waitFor('all taps attached', async () => ((await agent.sensor.attached()).length >= taps ? true : undefined), 600_000, 1000);
  const attachS = (Date.now() - t0) / 1000;
  await sleep(12_000); // two periods and two reconciles with everything attached
  const status = await readFile('/proc/self/status', 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  process.stdout.write(`${JSON.stringify({ taps, attachS, rssMB: kb('VmRSS') / 1024, peakMB: kb('VmHWM') / 1024, heapMB: process.memoryUsage().heapUsed / 2 ** 20 })}\n`);
  await agent.stop();
}

async function main(): Promise<void> {
  const { writeDocs, args } = benchArgs();
  const taps = Number(args[0] ?? 1000);
  const lines = ['| agent run | memory | peak | JS heap | attach |', '|---|---|---|---|---|'];
  process.stdout.write(`${lines.join('\n')}\n`);
  const id = uniqueName('b', 5);
  const ns = `vcb-${id}`;
  const dir = await mkdtemp(join(tmpdir(), 'vc-bench-agent-'));
  const pinRoot = `/sys/fs/bpf/vcb-${id}`;
  let redis: TestRedis | undefined;
  try {
    await run('ip', ['netns', 'add', ns]);
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    redis = await TestRedis.start(ns);
    const url = redis.url;
    const cmds = Array.from({ length: taps }, (_, i) => `tuntap add dev ${tapName(i)} mode tap\nlink set ${tapName(i)} up`).join('\n');
    await run('ip', ['-n', ns, '-batch', '-'], { input: `${cmds}\n`, timeoutMs: 600_000 });
    const self = fileURLToPath(import.meta.url);
    // Side by side: Node's defaults, then the flags the agent is deployed with.
    for (const flags of [[], AGENT_NODE_FLAGS]) {
      await rm(pinRoot, { recursive: true, force: true });
      const out = await new Promise<string>((resolve, reject) => {
        const c = spawn('nsenter', [`--net=/run/netns/${ns}`, '--', process.execPath, ...flags, self, '--child', String(taps), url, dir, pinRoot], { stdio: ['ignore', 'pipe', 'inherit'] });
        let text = '';
        c.stdout.on('data', (d: Buffer) => (text += d.toString()));
        c.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`bench child exited ${code}`))));
      });
      const r = JSON.parse(out.trim().split('\n').pop()!) as { taps: number; attachS: number; rssMB: number; peakMB: number; heapMB: number };
      const line = `| agent, ${r.taps} taps, node ${flags.join(' ') || '(defaults)'} | RSS ${r.rssMB.toFixed(0)} MB | peak ${r.peakMB.toFixed(0)} MB | JS heap ${r.heapMB.toFixed(0)} MB | attach of all taps ${r.attachS.toFixed(0)} s |`;
      lines.push(line);
      process.stdout.write(`${line}\n`);
    }
    await maybeWriteBlock(writeDocs, 'agent', lines.join('\n'));
  } finally {
    await redis?.close();
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    await rm(pinRoot, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  await child(Number(process.argv[3]), process.argv[4]!, process.argv[5]!, process.argv[6]!);
  process.exit(0);
} else {
  await main();
}
