// Sensor cost for the README: throughput and CPU with no sensor, the eBPF
// sensor and the pcap fallback on a veth "tap", side by side in one
// interleaved run, then the time to read 100,000 flows out of the maps.
// Run as root after setup: node dist/test/bench/sensor.js [repetitions] [seconds] [--write-docs]
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import bpf from 'bpf';
import { table } from '../../src/cli/table.js';
import { COUNTS, Dir, KEY, MAX_FLOWS, u32, type FlowCounts } from '../../src/sensor/layout.js';
import type { Reading } from '../../src/sensor/sensor.js';
import type { EbpfSensor } from '../../src/sensor/ebpf.js';
import { bpfObject, packageRoot } from '../../src/paths.js';
import { run, sleep } from '../../src/util/exec.js';
import { TapPair } from '../helpers/netns.js';
import { uniqueName } from '../helpers/names.js';
import { benchArgs, maybeWriteBlock } from './doc.js';

// The sensor logs every attach at info level; 24 attaches would bury the tables.
// Set before the sensor (and so the logger) is loaded, hence the dynamic import.
process.env.VIRT_COHORT_LOG_LEVEL ??= 'warn';
const { EbpfSensor: Ebpf } = await import('../../src/sensor/ebpf.js');

const { writeDocs, args } = benchArgs();
const REPS = Number(args[0] ?? 3);
const SECONDS = Number(args[1] ?? 5);
const VM = 1;
const FLOWS = 100_000;
const READ_TARGET_MS = 200;
const id = uniqueName('b');
const pair = new TapPair(id);
const pinRoot = `/sys/fs/bpf/vc-${id}`;
const object = bpfObject;
const pcapRead = join(packageRoot, 'dist', 'test', 'helpers', 'pcap-read.js');
const STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const out = (s: string) => process.stdout.write(`${s}\n`);
// A loss: negative means faster than with no sensor (noise).
const pct = (x: number) => `${x.toFixed(1)} %`;
const int = (x: number) => Math.round(x).toLocaleString('en-US');

// ---------------------------------------------------------------- workloads

interface Workload {
  name: 'tcp' | 'udp';
  label: string;
  unit: string;
  args: string[];
  rate(json: IperfJson): number;
  format(x: number): string;
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

type Config = 'none' | 'ebpf' | 'ebpf+stats' | 'pcap';
// ebpf+stats is a separate run because bpf_stats itself costs two clock reads
// per program run: the plain ebpf run gives the throughput, this one the ns/frame.
const CONFIGS: Config[] = ['none', 'ebpf', 'ebpf+stats', 'pcap'];
const LABEL: Record<Config, string> = { none: 'no sensor', ebpf: 'eBPF', 'ebpf+stats': 'eBPF, bpf_stats on', pcap: 'pcap' };

interface Sample {
  rate: number;
  /** Sensor CPU per frame seen on the tap, in ns (ebpf+stats, pcap). */
  nsPerFrame?: number;
  /** Frames the sensor saw (eBPF: program runs; pcap: frames counted), per second of traffic. */
  framesPerS?: number;
}

let sensor: EbpfSensor;
let statsBefore: string | undefined;
let pcapAvailable = existsSync(pcapRead);

async function measure(config: Config, w: Workload): Promise<Sample> {
  switch (config) {
    case 'none':
      return { rate: await iperf(w) };
    case 'ebpf':
      return withEbpf(async () => ({ rate: await iperf(w) }));
    case 'ebpf+stats':
      return withEbpf(() => withBpfStats(() => iperf(w)));
    case 'pcap':
      return withPcap(() => iperf(w));
  }
}

async function withEbpf<T>(body: () => Promise<T>): Promise<T> {
  await sensor.attach('tap0', VM);
  await sensor.read();
  try {
    return await body();
  } finally {
    await sensor.detach('tap0');
    // detach leaves the clsact qdisc; remove it so "no sensor" really has no hook.
    await run('tc', ['qdisc', 'del', 'dev', 'tap0', 'clsact'], { netns: pair.host }).catch(() => undefined);
  }
}

/** Summed run time and run count of our two programs, by their pins (other copies may be loaded). */
async function progStats(): Promise<{ ns: number; runs: number }> {
  let ns = 0,
    runs = 0;
  for (const prog of ['vc_from_vm', 'vc_to_vm']) {
    const info = JSON.parse(await run('bpftool', ['-j', 'prog', 'show', 'pinned', join(sensor.pinDir, 'progs', prog)])) as { run_time_ns?: number; run_cnt?: number };
    ns += info.run_time_ns ?? 0;
    runs += info.run_cnt ?? 0;
  }
  return { ns, runs };
}

async function withBpfStats(traffic: () => Promise<number>): Promise<Sample> {
  await run('sysctl', ['-q', '-w', 'kernel.bpf_stats_enabled=1']);
  try {
    const s0 = await progStats();
    const rate = await traffic();
    const s1 = await progStats();
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
 * The program alone, hot in cache and without bpf_stats: BPF_PROG_TEST_RUN of
 * vc_from_vm on one 64-byte UDP datagram "from the VM" on tap0, a million times.
 * It separates the program's own cost from what real traffic adds (cold caches,
 * the statistics' clock reads).
 */
async function testRunNs(): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'vc-bench-'));
  try {
    const ifindex = (JSON.parse(await run('ip', ['-j', '-n', pair.host, 'link', 'show', 'tap0'])) as { ifindex: number }[])[0]!.ifindex;
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
      await run('bpftool', ['-j', 'prog', 'run', 'pinned', join(sensor.pinDir, 'progs', 'vc_from_vm'), 'data_in', join(dir, 'frame'), 'ctx_in', join(dir, 'ctx'), 'repeat', '1000000'], {
        netns: pair.host,
      }),
    ) as { duration: number };
    return res.duration;
  } finally {
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

// ------------------------------------------------------------ 100,000 flows

// Lets us collect garbage before measuring memory without a node flag.
v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function flowKey(i: number): Buffer {
  const k = Buffer.alloc(KEY.size);
  k.writeUInt32LE(VM, KEY.vm);
  k.writeUInt8(Dir.Tx, KEY.dir);
  k.writeUInt8(4, KEY.family);
  k.writeUInt16LE(0x0800, KEY.ethertype);
  k.writeUInt32BE(0x0a800000 + i, KEY.peer); // 10.128.0.0 + i: distinct peers
  return k;
}

function flowCounts(i: number): Buffer {
  const v = Buffer.alloc(COUNTS.size);
  v.writeBigUInt64LE(BigInt(1 + (i % 100)), COUNTS.packets);
  v.writeBigUInt64LE(BigInt(100 * (1 + (i % 100))), COUNTS.bytes);
  return v;
}

function openPinned(name: string): bpf.RawMap {
  return new bpf.RawMap(bpf.createMapRef(bpf.objGet(join(sensor.pinDir, 'maps', name)), { transfer: true }));
}

/**
 * Fills the count map the programs write now (vc_active holds its id) as if
 * FLOWS peers had talked. Returns that map, open; the caller closes it.
 */
function fillActive(): bpf.RawMap {
  const active = openPinned('vc_active');
  const activeId = active.get(u32(0))!.readUInt32LE(0);
  active.ref.close();
  const maps = [openPinned('vc_counts0'), openPinned('vc_counts1')];
  const target = maps.find((m) => m.ref.id === activeId);
  if (!target) throw new Error(`vc_active points at map ${activeId}, neither of the sensor's count maps`);
  for (let i = 0; i < FLOWS; i += 10_000) {
    const entries: [Buffer, Buffer][] = [];
    for (let j = i; j < Math.min(FLOWS, i + 10_000); j++) entries.push([flowKey(j), flowCounts(j)]);
    target.setBatch(entries);
  }
  maps.filter((m) => m !== target).forEach((m) => m.ref.close());
  return target;
}

interface ReadSample {
  ms: number;
  /** The same fill drained with bare batch lookups and deletes: the kernel's share. */
  kernelMs: number;
  rssMiB: number;
  /** Heap growth right after the read, garbage included. */
  heapMiB: number;
  /** What stays on the heap after a collection while the reading is alive. */
  retainedMiB: number;
  flows: number;
}

const mib = (b: number) => b / 2 ** 20;

async function timeRead(): Promise<ReadSample> {
  await sensor.read(); // both maps empty, whichever is active
  const kernelMs = timeBareDrain();
  fillActive().ref.close();
  gc();
  const before = process.memoryUsage();
  const t0 = process.hrtime.bigint();
  const reading = await sensor.read();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const after = process.memoryUsage();
  gc();
  const retained = process.memoryUsage().heapUsed - before.heapUsed;
  return {
    ms,
    kernelMs,
    rssMiB: mib(after.rss - before.rss),
    heapMiB: mib(after.heapUsed - before.heapUsed),
    retainedMiB: mib(retained),
    flows: reading.flows.length, // `reading` is alive until here
  };
}

/** Fills the active map, then drains it as read() does but without decoding or merging. */
function timeBareDrain(): number {
  const map = fillActive();
  const t0 = process.hrtime.bigint();
  const keys: Buffer[] = [];
  for (const batch of map.getBatch(8192)) for (const [k] of batch) keys.push(k);
  for (let i = 0; i < keys.length; i += 8192) map.deleteBatch(keys.slice(i, i + 8192));
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  map.ref.close();
  return ms;
}

// ------------------------------------------------------------------- report

type Results = Map<string, Sample[]>;
const key = (w: Workload, c: Config) => `${w.name}/${c}`;

function throughputTable(results: Results): string {
  const cells = (w: Workload, c: Config) => {
    const s = results.get(key(w, c)) ?? [];
    if (!s.length) return ['not available', ''];
    const rates = s.map((x) => x.rate);
    const base = median((results.get(key(w, 'none')) ?? []).map((x) => x.rate));
    const range = `(${w.format(Math.min(...rates))}-${w.format(Math.max(...rates))})`;
    return [`${w.format(median(rates))} ${range}`, c === 'none' ? '-' : pct(100 * (1 - median(rates) / base))];
  };
  return table(
    ['SENSOR', ...WORKLOADS.flatMap((w) => [`${w.label} ${w.unit} (MIN-MAX)`, 'LOSS'])],
    CONFIGS.map((c) => [LABEL[c], ...WORKLOADS.flatMap((w) => cells(w, c))]),
  );
}

function cpuPerFrame(results: Results, w: Workload, c: Config): number | undefined {
  const s = (results.get(key(w, c)) ?? []).map((x) => x.nsPerFrame).filter((x): x is number => x !== undefined && Number.isFinite(x));
  return s.length ? median(s) : undefined;
}

function cpuTable(results: Results): string {
  const row = (c: Config, what: string) => [
    LABEL[c],
    what,
    ...WORKLOADS.flatMap((w) => {
      const ns = cpuPerFrame(results, w, c);
      const fps = (results.get(key(w, c)) ?? []).map((x) => x.framesPerS ?? 0);
      return ns === undefined ? ['not available', ''] : [ns.toFixed(ns < 100 ? 1 : 0), int(median(fps))];
    }),
  ];
  const ratio = [
    'pcap / eBPF',
    'CPU per frame',
    ...WORKLOADS.flatMap((w) => {
      const e = cpuPerFrame(results, w, 'ebpf+stats'),
        p = cpuPerFrame(results, w, 'pcap');
      return [e && p ? `${(p / e).toFixed(0)}x` : 'n/a', ''];
    }),
  ];
  return table(
    ['SENSOR', 'MEASURED', ...WORKLOADS.flatMap((w) => [`${w.label} NS/FRAME`, 'FRAMES/S SEEN'])],
    [row('ebpf+stats', 'run_time_ns / run_cnt of vc_from_vm + vc_to_vm'), row('pcap', 'capture process utime+stime / frames counted'), ratio],
  );
}

interface Bench {
  results: Results;
  /** BPF_PROG_TEST_RUN ns per run of vc_from_vm. */
  testRun: number[];
  reads: ReadSample[];
  wallSeconds: number;
}

interface Target {
  what: string;
  measured: string;
  pass: boolean | undefined;
}

function lossOf(results: Results, w: Workload, c: Config): number {
  return 100 * (1 - median(results.get(key(w, c))!.map((x) => x.rate)) / median(results.get(key(w, 'none'))!.map((x) => x.rate)));
}

/** Half the min-max range of the no-sensor runs, in %: a loss smaller than this is not resolved. */
function noiseOf(results: Results, w: Workload): number {
  const r = results.get(key(w, 'none'))!.map((x) => x.rate);
  return (50 * (Math.max(...r) - Math.min(...r))) / median(r);
}

function targets(b: Bench): Target[] {
  const udp = WORKLOADS[1]!;
  const e = cpuPerFrame(b.results, udp, 'ebpf+stats');
  const p = cpuPerFrame(b.results, udp, 'pcap');
  const readMs = median(b.reads.map((r) => r.ms));
  return [
    ...WORKLOADS.map((w) => {
      const loss = lossOf(b.results, w, 'ebpf');
      const noise = noiseOf(b.results, w);
      const within = Math.abs(loss) <= noise ? ', within it' : '';
      return { what: `eBPF throughput loss <= 0.5 % (${w.label})`, measured: `${pct(loss)} (noise ±${noise.toFixed(1)} %${within})`, pass: loss <= 0.5 };
    }),
    {
      what: 'eBPF program <= 30 ns per packet (UDP 64 B)',
      measured: `${e!.toFixed(0)} ns (test run alone: ${median(b.testRun).toFixed(0)} ns)`,
      pass: e! <= 30,
    },
    {
      what: 'eBPF >= 10x less CPU per packet than pcap (UDP 64 B)',
      measured: p === undefined ? 'pcap: not available' : `${(p / e!).toFixed(0)}x`,
      pass: p === undefined ? undefined : p / e! >= 10,
    },
    { what: `read ${int(FLOWS)} flows <= ${READ_TARGET_MS} ms`, measured: `${readMs.toFixed(0)} ms`, pass: readMs <= READ_TARGET_MS },
  ];
}

const verdict = (t: Target) => (t.pass === undefined ? 'n/a' : t.pass ? 'pass' : 'MISS');
const range = (xs: number[], digits = 0) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)})`;

function readTable(reads: ReadSample[]): string {
  const each = (f: (r: ReadSample) => number) => reads.map((r) => f(r).toFixed(1)).join(', ');
  return table(
    ['SENSOR.READ() MS', 'BARE BATCH GET+DELETE MS', 'RSS GROWTH MIB (EACH)', 'HEAP GROWTH MIB', 'HEAP RETAINED MIB', 'FLOWS RETURNED'],
    [
      [
        range(reads.map((r) => r.ms)),
        range(reads.map((r) => r.kernelMs)),
        each((r) => r.rssMiB),
        median(reads.map((r) => r.heapMiB)).toFixed(1),
        median(reads.map((r) => r.retainedMiB)).toFixed(1),
        reads.map((r) => int(r.flows)).join(', '),
      ],
    ],
  );
}

function report(b: Bench): void {
  out(`\nThroughput VM -> host over the tap (iperf3, ${REPS} x ${SECONDS} s each, interleaved; median (min-max), loss vs no sensor)`);
  out(throughputTable(b.results));
  const noise = WORKLOADS.map((w) => `${w.label} ±${noiseOf(b.results, w).toFixed(1)} %`);
  out(`run-to-run spread with no sensor (half the min-max range): ${noise.join(', ')}; a negative loss is noise`);
  out(`\nSensor CPU per frame seen on the tap (median; a GSO super-packet is one frame)`);
  out(cpuTable(b.results));
  out(`eBPF program alone (BPF_PROG_TEST_RUN x 1,000,000 on one 64 B UDP frame, hot cache, no bpf_stats; ` + `includes the test harness's own per-run cost): ${range(b.testRun)} ns per run`);
  if (!pcapAvailable) out('pcap: not available (dist/test/helpers/pcap-read.js is missing)');
  out(`\nReading ${int(FLOWS)} flows out of the active map (${b.reads.length} runs, median (min-max))`);
  out(readTable(b.reads));
  out('\nTargets');
  out(
    table(
      ['TARGET', 'MEASURED', 'RESULT'],
      targets(b).map((t) => [t.what, t.measured, verdict(t)]),
    ),
  );
  out(`\nSummary for the README (${b.wallSeconds.toFixed(0)} s run, kernel ${kernel}, ${cpus} CPUs):\n`);
  out(readmeBlock(b));
}

function readmeBlock(b: Bench): string {
  const tput = (w: Workload, c: Config) => {
    const s = b.results.get(key(w, c));
    if (!s?.length) return 'not available';
    const change = -lossOf(b.results, w, c);
    return `${w.format(median(s.map((x) => x.rate)))} ${w.unit}${c === 'none' ? '' : ` (${change >= 0 ? '+' : ''}${change.toFixed(1)} %)`}`;
  };
  const cpu = (c: Config) =>
    WORKLOADS.map((w) => {
      const ns = cpuPerFrame(b.results, w, c);
      return ns === undefined ? 'n/a' : `${ns.toFixed(0)} ns`;
    }).join(' / ');
  return [
    `| sensor | ${WORKLOADS.map((w) => w.label).join(' | ')} | CPU per frame (${WORKLOADS.map((w) => w.name.toUpperCase()).join(' / ')}) |`,
    `|---|${WORKLOADS.map(() => '---|').join('')}---|`,
    ...(['none', 'ebpf', 'pcap'] as Config[]).map((c) => `| ${LABEL[c]} | ${WORKLOADS.map((w) => tput(w, c)).join(' | ')} | ${c === 'none' ? '-' : cpu(c === 'ebpf' ? 'ebpf+stats' : c)} |`),
    `| read ${int(FLOWS)} flows | ${median(b.reads.map((r) => r.ms)).toFixed(0)} ms | heap +${median(b.reads.map((r) => r.retainedMiB)).toFixed(0)} MiB retained | |`,
    '',
    '| target | measured | |',
    '|---|---|---|',
    ...targets(b).map((t) => `| ${t.what} | ${t.measured} | ${verdict(t)} |`),
  ].join('\n');
}

// --------------------------------------------------------------------- main

let vmMac = '';
let kernel = '';
let cpus = 0;
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

async function main(): Promise<void> {
  const started = Date.now();
  kernel = (await run('uname', ['-r'])).trim();
  cpus = (await readFile('/proc/cpuinfo', 'utf8')).split('\n').filter((l) => l.startsWith('processor')).length;
  statsBefore = (await readFile(STATS_SYSCTL, 'utf8')).trim();
  if (statsBefore !== '0') out(`note: bpf_stats_enabled was already ${statsBefore}: every eBPF run pays for the statistics`);
  await pair.create();
  vmMac = (JSON.parse(await run('ip', ['-j', '-n', pair.vm, 'link', 'show', 'eth0'])) as { address: string }[])[0]!.address;
  sensor = await Ebpf.open({ pinRoot, netns: pair.host, object });
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
        out(`  ${rep}/${REPS} ${w.label.padEnd(17)} ${LABEL[c].padEnd(18)} ${w.format(s.rate)} ${w.unit}${cpu}`);
      }
    }
  }

  // The program alone, while attached (vc_taps must know tap0).
  const testRun = await withEbpf(async () => [await testRunNs(), await testRunNs(), await testRunNs()]);

  if (FLOWS > MAX_FLOWS) throw new Error(`cannot fill ${FLOWS} flows into maps of ${MAX_FLOWS}`);
  const reads: ReadSample[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await timeRead();
    reads.push(r);
    out(`  read ${i + 1}/3: ${r.ms.toFixed(1)} ms (bare batch get+delete ${r.kernelMs.toFixed(1)} ms), ${int(r.flows)} flows`);
    if (r.flows !== FLOWS) out(`  WARNING: read returned ${int(r.flows)} flows, expected ${int(FLOWS)}`);
  }
  const b = { results, testRun, reads, wallSeconds: (Date.now() - started) / 1000 };
  report(b);
  await maybeWriteBlock(writeDocs, 'sensor', readmeBlock(b));
}

try {
  await main();
} catch (err) {
  // Killing our children on a signal makes main fail too: that error is not news.
  if (!interrupted) throw err;
} finally {
  await cleanup();
}
