// Sensor cost for the README: throughput and CPU with no program, an empty
// tc program (the floor: what tc, a program call and bpf_stats cost here), the
// eBPF sensor (one shared flow map behind each CPU's last-flow cache, the
// default), the same without the cache (every frame to the flow map: the miss
// path, counter-nocache.bpf.o), both again with per-CPU flow maps
// (counter-percpu.bpf.o, counter-nocache-percpu.bpf.o), and the pcap fallback,
// on a veth "tap", side by side in one interleaved run; then the time to read
// 100,000 flows out of each kind of map.
// Run as root after setup: node dist/test/bench/sensor.js [repetitions] [seconds] [--write-docs]
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { MAX_FLOWS, SLOT, encodeSlot, u32, type FlowCounts } from '../../src/sensor/layout.js';
import type { Reading } from '../../src/sensor/sensor.js';
import type { EbpfSensor } from '../../src/sensor/ebpf.js';
import { bpfObject, packageRoot } from '../../src/paths.js';
import { run, sleep } from '../../src/util/exec.js';
import { TapPair } from '../helpers/netns.js';
import { uniqueName } from '../helpers/names.js';
import { README, benchArgs, maybeWriteBlock } from './doc.js';
import { FLOWS, cpus, decodeMs, timeRead, type ReadSample } from './sensor-read.js';
import { BIG_HOST, PROGRAMS, ROWS, type Config, type Program, type Results, type Sample, type WorkloadInfo, docBlock, key, label, report } from './sensor-report.js';
import bpf from 'bpf';

// The sensor logs every attach at info level; 24 attaches would bury the tables.
// Set before the sensor (and so the logger) is loaded, hence the dynamic import.
process.env.VIRT_COHORT_LOG_LEVEL ??= 'warn';
const { EbpfSensor: Ebpf } = await import('../../src/sensor/ebpf.js');

const { writeDocs, args } = benchArgs();
const REPS = Number(args[0] ?? 3);
const SECONDS = Number(args[1] ?? 5);
const VM = 1;
const id = uniqueName('b');
const pair = new TapPair(id);
const pinRoot = `/sys/fs/bpf/vc-${id}`;
const object = bpfObject;
const emptyPin = join(pinRoot, 'empty');
const emptyObject = join(dirname(object), 'empty.bpf.o');
const nocacheObject = join(dirname(object), 'counter-nocache.bpf.o');
const pcapRead = join(packageRoot, 'dist', 'test', 'helpers', 'pcap-read.js');
const STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';

const out = (s: string) => process.stdout.write(`${s}\n`);
const int = (x: number) => Math.round(x).toLocaleString('en-US');

// ---------------------------------------------------------------- workloads

interface Workload extends WorkloadInfo {
  args: string[];
  rate(json: IperfJson): number;
}
interface IperfSum {
  bits_per_second: number;
  packets?: number;
  lost_packets?: number;
  seconds: number;
}
interface IperfJson {
  end: { sum?: IperfSum; sum_received?: IperfSum };
  server_output_json?: IperfJson;
  error?: string;
}

const WORKLOADS: Workload[] = [
  {
    name: 'tcp',
    label: 'TCP bulk',
    unit: 'Gbit/s',
    args: [],
    rate: (j) => j.end.sum_received!.bits_per_second / 1e9,
    format: (x) => x.toFixed(2),
  },
  {
    // 64-byte datagrams as fast as the sender can: the per-packet cost dominates.
    name: 'udp',
    label: 'UDP 64 B max rate',
    unit: 'pkt/s',
    args: ['-u', '-l', '64', '-b', '0'],
    // Receiver side: the server's own sum (highest sequence seen minus the gaps).
    rate: (j) => {
      const s = (j.server_output_json ?? j).end.sum!;
      return (s.packets! - s.lost_packets!) / s.seconds;
    },
    format: int,
  },
];

/** One iperf3 run, client in the VM namespace, server on the host side of the tap. */
async function iperf(w: Workload): Promise<number> {
  const text = await run('iperf3', ['-c', pair.peers[0]!, '-t', String(SECONDS), '-J', '--get-server-output', ...w.args], { netns: pair.vm, timeoutMs: (SECONDS + 30) * 1000 });
  const json = JSON.parse(text) as IperfJson;
  if (json.error) throw new Error(`iperf3: ${json.error}`);
  return w.rate(json);
}

let iperfServer: ChildProcess | undefined;

async function startIperfServer(): Promise<void> {
  iperfServer = spawn('nsenter', [`--net=/run/netns/${pair.host}`, '--', 'iperf3', '-s', '-J'], { stdio: 'ignore' });
  // With -J the server prints nothing until a test ends: poll for its socket instead.
  for (let i = 0; i < 50; i++) {
    if ((await run('ss', ['-Hltn', 'sport = :5201'], { netns: pair.host })).trim()) return;
    await sleep(100);
  }
  throw new Error('iperf3 -s did not start listening on :5201');
}

// ------------------------------------------------------------ configurations

// Each step of the per-packet path, measured side by side: the floor (an empty
// program attached the same way), the sensor (shared flow maps behind the
// last-flow cache), the same without the cache (what the cache saves; every
// frame a miss), and both with per-CPU flow maps (what atomic adds cost).
// The +stats runs are separate because bpf_stats itself costs two clock reads
// per program run: the plain runs give the throughput, these the ns/frame.
const CONFIGS: Config[] = [...ROWS, ...PROGRAMS.map((p) => `${p}+stats` as const)];

let sensor: EbpfSensor;
let nocache: EbpfSensor;
let percpu: EbpfSensor;
let percpunocache: EbpfSensor;
const sensorOf = (p: Exclude<Program, 'empty'>) => ({ ebpf: sensor, nocache, percpu, percpunocache })[p];
let statsBefore: string | undefined;
let pcapAvailable = existsSync(pcapRead);

async function measure(config: Config, w: Workload): Promise<Sample> {
  if (config === 'none') return { rate: await iperf(w) };
  if (config === 'pcap') return withPcap(() => iperf(w));
  const program = config.replace('+stats', '') as Program;
  const traffic = config.endsWith('+stats') ? () => withBpfStats(program, () => iperf(w)) : async () => ({ rate: await iperf(w) });
  return program === 'empty' ? withEmpty(traffic) : withEbpf(sensorOf(program), traffic);
}

/** Leaves tap0 with no hook at all, so "no program" really has none. */
async function noHook(): Promise<void> {
  await run('tc', ['qdisc', 'del', 'dev', 'tap0', 'clsact'], { netns: pair.host }).catch(() => undefined);
}

async function withEbpf<T>(s: EbpfSensor, body: () => Promise<T>): Promise<T> {
  await s.attach('tap0', VM);
  await s.read();
  try {
    return await body();
  } finally {
    await s.detach('tap0');
    await noHook();
  }
}

/** The empty program on both hooks, at our priority, as the sensor attaches its own. */
async function withEmpty<T>(body: () => Promise<T>): Promise<T> {
  await run('tc', ['qdisc', 'add', 'dev', 'tap0', 'clsact'], { netns: pair.host });
  try {
    for (const hook of ['ingress', 'egress']) {
      await run('tc', ['filter', 'replace', 'dev', 'tap0', hook, 'pref', '49344', 'handle', '0xc0c0', 'bpf', 'direct-action', 'object-pinned', emptyPin, 'classid', ':1'], { netns: pair.host });
    }
    return await body();
  } finally {
    await noHook();
  }
}

const progPins = (p: Program) => (p === 'empty' ? [emptyPin] : ['vc_from_vm', 'vc_to_vm'].map((n) => join(sensorOf(p).pinDir, 'progs', n)));

/** Summed run time and run count of the programs, by their pins (other copies may be loaded). */
async function progStats(p: Program): Promise<{ ns: number; runs: number }> {
  let ns = 0,
    runs = 0;
  for (const pin of progPins(p)) {
    const info = JSON.parse(await run('bpftool', ['-j', 'prog', 'show', 'pinned', pin])) as { run_time_ns?: number; run_cnt?: number };
    ns += info.run_time_ns ?? 0;
    runs += info.run_cnt ?? 0;
  }
  return { ns, runs };
}

async function withBpfStats(p: Program, traffic: () => Promise<number>): Promise<Sample> {
  await run('sysctl', ['-q', '-w', 'kernel.bpf_stats_enabled=1']);
  try {
    const s0 = await progStats(p);
    const rate = await traffic();
    const s1 = await progStats(p);
    const runs = s1.runs - s0.runs;
    return { rate, nsPerFrame: (s1.ns - s0.ns) / runs, framesPerS: runs / SECONDS };
  } finally {
    await restoreBpfStats();
  }
}

async function restoreBpfStats(): Promise<void> {
  if (statsBefore !== undefined) await run('sysctl', ['-q', '-w', `kernel.bpf_stats_enabled=${statsBefore}`]);
}

/**
 * A program alone, hot in cache and without bpf_stats: BPF_PROG_TEST_RUN on
 * one 64-byte UDP datagram "from the VM" on tap0, a million times. It
 * separates the program's own cost from what real traffic adds (cold caches,
 * the statistics' clock reads). A test run cannot carry a classid, so the
 * counter finds its tap in slot 0, which the sensor never hands out: set here
 * for the run and cleared after.
 */
async function testRunNs(p: Program): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'vc-bench-'));
  const s = p === 'empty' ? sensor : sensorOf(p);
  const slots = new bpf.RawMap(bpf.createMapRef(bpf.objGet(join(s.pinDir, 'maps', 'vc_slots')), { transfer: true }));
  try {
    const ifindex = (JSON.parse(await run('ip', ['-j', '-n', pair.host, 'link', 'show', 'tap0'])) as { ifindex: number }[])[0]!.ifindex;
    slots.set(u32(0), encodeSlot(VM, ifindex));
    const frame = Buffer.alloc(14 + 20 + 8 + 64);
    frame.writeUInt16BE(0x0800, 12);
    Buffer.from([0x45, 0, 0, 92, 0, 0, 0, 0, 64, 17, 0, 0, 10, 77, 0, 100, 10, 77, 0, 1]).copy(frame, 14);
    frame.writeUInt16BE(5201, 14 + 20 + 2);
    frame.writeUInt16BE(72, 14 + 20 + 4);
    // struct __sk_buff (192 bytes); the test run takes the device from its ifindex (offset 40).
    const ctx = Buffer.alloc(192);
    ctx.writeUInt32LE(ifindex, 40);
    await writeFile(join(dir, 'frame'), frame);
    await writeFile(join(dir, 'ctx'), ctx);
    const res = JSON.parse(
      await run('bpftool', ['-j', 'prog', 'run', 'pinned', progPins(p)[0]!, 'data_in', join(dir, 'frame'), 'ctx_in', join(dir, 'ctx'), 'repeat', '1000000'], {
        netns: pair.host,
      }),
    ) as { duration: number };
    return res.duration;
  } finally {
    slots.set(u32(0), Buffer.alloc(SLOT.size));
    slots.ref.close();
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------- pcap

let pcapChild: ChildProcess | undefined;
const clockTicks = Number((await run('getconf', ['CLK_TCK'])).trim());

/** utime + stime of a process, in ns; undefined once it has exited. */
async function cpuNs(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!stat) return undefined;
  // Fields after "(comm)": state is field 3, utime 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) / clockTicks) * 1e9;
}

/** A child's stdout as lines, and a way to wait for the next one that matches. */
function lineWaiter(child: ChildProcess) {
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    lines.push(l);
    waiters.splice(0).forEach((w) => w());
  });
  child.once('exit', () => waiters.splice(0).forEach((w) => w()));
  return async (match: (l: string) => boolean, what: string, timeoutMs: number): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = lines.find(match);
      if (found) return found;
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`pcap-read exited (${child.exitCode ?? child.signalCode}) before ${what}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} from pcap-read`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 200);
      });
    }
  };
}

async function withPcap(traffic: () => Promise<number>): Promise<Sample> {
  // Longer than the traffic, so the capture is still running when we read its CPU.
  const captureSeconds = SECONDS + 4;
  const child = spawn('nsenter', [`--net=/run/netns/${pair.host}`, '--', process.execPath, pcapRead, '--tap', 'tap0', '--vm', String(VM), '--mac', vmMac, '--seconds', String(captureSeconds)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, VIRT_COHORT_LOG_LEVEL: 'warn' },
  });
  pcapChild = child;
  const next = lineWaiter(child);
  try {
    await next((l) => l.startsWith('ready'), 'ready', 30_000);
    // nsenter execs node without forking (no pid namespace), so this pid is the capture.
    const cpu0 = (await cpuNs(child.pid!))!;
    const rate = await traffic();
    const cpu1 = await settledCpu(child.pid!);
    const reading = JSON.parse(await next((l) => l.startsWith('{'), 'its reading', (captureSeconds + 30) * 1000)) as Reading;
    const frames = reading.flows.reduce((n: number, f: FlowCounts) => n + f.packets, 0);
    return { rate, nsPerFrame: (cpu1 - cpu0) / frames, framesPerS: frames / SECONDS };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    pcapChild = undefined;
  }
}

/** The capture's CPU once it has worked off its backlog (stops growing for 300 ms). */
async function settledCpu(pid: number): Promise<number> {
  let last = (await cpuNs(pid))!;
  for (let i = 0; i < 20; i++) {
    await sleep(300);
    const now = await cpuNs(pid);
    if (now === undefined || now === last) return last;
    last = now;
  }
  return last;
}

// --------------------------------------------------------------------- main

let vmMac = '';
let cleaning: Promise<void> | undefined;
let interrupted = false;

/** Idempotent; a signal and main's own `finally` share one run of it, and both wait for it to end. */
function cleanup(): Promise<void> {
  return (cleaning ??= removeEverything());
}

async function removeEverything(): Promise<void> {
  for (const c of [pcapChild, iperfServer]) if (c && c.exitCode === null) c.kill('SIGKILL');
  await restoreBpfStats().catch((err) => out(`could not restore bpf_stats_enabled=${statsBefore}: ${(err as Error).message}`));
  await pair.destroy();
  await rm(pinRoot, { recursive: true, force: true });
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    interrupted = true;
    void cleanup().finally(() => process.exit(130));
  });
}

/** Kernel memory of the two flow maps (bpftool's bytes_memlock), in bytes. */
async function flowMapBytes(s: EbpfSensor): Promise<number> {
  let n = 0;
  for (const m of ['vc_counts0', 'vc_counts1']) n += (JSON.parse(await run('bpftool', ['-j', 'map', 'show', 'pinned', join(s.pinDir, 'maps', m)])) as { bytes_memlock: number }).bytes_memlock;
  return n;
}

async function reads(s: EbpfSensor): Promise<ReadSample[]> {
  const samples: ReadSample[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await timeRead(s, VM);
    samples.push(r);
    out(`  read ${i + 1}/3 (${s.maps} maps): ${r.ms.toFixed(1)} ms (bare batch get+delete ${r.kernelMs.toFixed(1)} ms), ${int(r.flows)} flows`);
    if (r.flows !== FLOWS) out(`  WARNING: read returned ${int(r.flows)} flows, expected ${int(FLOWS)}`);
  }
  return samples;
}

async function main(): Promise<void> {
  const started = Date.now();
  const kernel = (await run('uname', ['-r'])).trim();
  statsBefore = (await readFile(STATS_SYSCTL, 'utf8')).trim();
  if (statsBefore !== '0') out(`note: bpf_stats_enabled was already ${statsBefore}: every eBPF run pays for the statistics`);
  await pair.create();
  vmMac = (JSON.parse(await run('ip', ['-j', '-n', pair.vm, 'link', 'show', 'eth0'])) as { address: string }[])[0]!.address;
  sensor = await Ebpf.open({ pinRoot: join(pinRoot, 'shared'), netns: pair.host, object });
  nocache = await Ebpf.open({ pinRoot: join(pinRoot, 'nocache'), netns: pair.host, object: nocacheObject });
  // The per-CPU builds sit beside each object (percpuObject: counter-percpu.bpf.o, counter-nocache-percpu.bpf.o).
  percpu = await Ebpf.open({ pinRoot: join(pinRoot, 'percpu'), netns: pair.host, object, maps: 'per-CPU' });
  percpunocache = await Ebpf.open({ pinRoot: join(pinRoot, 'percpunocache'), netns: pair.host, object: nocacheObject, maps: 'per-CPU' });
  const kinds = [sensor, nocache, percpu, percpunocache].map((x) => x.maps).join(', ');
  if (kinds !== 'shared, shared, per-CPU, per-CPU') throw new Error(`expected shared, shared, per-CPU and per-CPU flow maps, got ${kinds}`);
  await run('bpftool', ['prog', 'load', emptyObject, emptyPin, 'type', 'classifier']);
  await startIperfServer();
  out(`sensor bench: ${pair.host}/tap0 <-> ${pair.vm}/eth0, pins under ${pinRoot}, ${REPS} repetitions of ${SECONDS} s`);

  const results: Results = new Map();
  for (let rep = 1; rep <= REPS; rep++) {
    for (const w of WORKLOADS) {
      for (const c of CONFIGS) {
        if (c === 'pcap' && !(pcapAvailable ||= existsSync(pcapRead))) continue;
        const s = await measure(c, w);
        results.set(key(w, c), [...(results.get(key(w, c)) ?? []), s]);
        const cpu = s.nsPerFrame === undefined ? '' : `, ${s.nsPerFrame.toFixed(1)} ns/frame, ${int(s.framesPerS!)} frames/s`;
        out(`  ${rep}/${REPS} ${w.label.padEnd(17)} ${label(c).padEnd(44)} ${w.format(s.rate)} ${w.unit}${cpu}`);
      }
    }
  }

  // The programs alone, while attached.
  const three = async (p: Program) => [await testRunNs(p), await testRunNs(p), await testRunNs(p)];
  const testRun = {
    empty: await three('empty'),
    ebpf: await withEbpf(sensor, () => three('ebpf')),
    nocache: await withEbpf(nocache, () => three('nocache')),
    percpu: await withEbpf(percpu, () => three('percpu')),
    percpunocache: await withEbpf(percpunocache, () => three('percpunocache')),
  };

  if (FLOWS > MAX_FLOWS) throw new Error(`cannot fill ${FLOWS} flows into maps of ${MAX_FLOWS}`);
  const decode = { here: [decodeMs(cpus), decodeMs(cpus), decodeMs(cpus)], big: [decodeMs(BIG_HOST), decodeMs(BIG_HOST), decodeMs(BIG_HOST)] };
  const b = {
    decode,
    workloads: WORKLOADS,
    results,
    testRun,
    reads: { shared: await reads(sensor), perCpu: await reads(percpu) },
    memory: { shared: await flowMapBytes(sensor), perCpu: await flowMapBytes(percpu) },
    wallSeconds: (Date.now() - started) / 1000,
    kernel,
    reps: REPS,
    seconds: SECONDS,
  };
  out(report(b));
  out('\nFor the docs:\n');
  out(docBlock(b));
  await maybeWriteBlock(writeDocs, 'sensor', docBlock(b));
  await maybeWriteBlock(writeDocs, 'sensor-summary', docBlock(b), README);
}

try {
  await main();
} catch (err) {
  // Killing our children on a signal makes main fail too: that error is not news.
  if (!interrupted) throw err;
} finally {
  await cleanup();
}
