// The read half of the sensor bench: 100,000 flows put into the active count
// map as if that many peers had talked, then one sensor.read() timed, with the
// bare batch lookups and deletes alone (the kernel's share) next to it.
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { join } from 'node:path';
import bpf from 'bpf';
import { table } from '../../src/cli/table.js';
import type { EbpfSensor } from '../../src/sensor/ebpf.js';
import { drainMap, flowMapView, possibleCpus } from '../../src/sensor/maps.js';
import { COUNTS, Dir, KEY, decodeFlow, u32 } from '../../src/sensor/layout.js';

export const FLOWS = 100_000;
const BATCH = 8192;

// Lets us collect garbage before measuring memory without a node flag.
v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const cpus = await possibleCpus();

export interface ReadSample {
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

function flowKey(vm: number, i: number): Buffer {
  const k = Buffer.alloc(KEY.size);
  k.writeUInt32LE(vm, KEY.vm);
  k.writeUInt8(Dir.Tx, KEY.dir);
  k.writeUInt8(4, KEY.family);
  k.writeUInt16LE(0x0800, KEY.ethertype);
  k.writeUInt32BE(0x0a800000 + i, KEY.peer); // 10.128.0.0 + i: distinct peers
  return k;
}

/** One struct vc_counts per CPU for a per-CPU map: the count on CPU 0, the others 0 (the read sums them all the same). */
function flowCounts(i: number, stride: number): Buffer {
  const v = Buffer.alloc(stride);
  v.writeBigUInt64LE(BigInt(1 + (i % 100)), COUNTS.packets);
  v.writeBigUInt64LE(BigInt(100 * (1 + (i % 100))), COUNTS.bytes);
  return v;
}

const stride = (sensor: EbpfSensor) => (sensor.maps === 'per-CPU' ? COUNTS.size * cpus : COUNTS.size);

function openPinned(sensor: EbpfSensor, name: string, valueStride?: number): bpf.RawMap {
  const ref = bpf.createMapRef(bpf.objGet(join(sensor.pinDir, 'maps', name)), { transfer: true });
  return valueStride === undefined ? new bpf.RawMap(ref) : flowMapView(ref, valueStride);
}

/** Fills the count map the programs write now (vc_gen holds its generation). Returns that map, open; the caller closes it. */
function fillActive(sensor: EbpfSensor, vm: number): bpf.RawMap {
  const gen = openPinned(sensor, 'vc_gen');
  const cur = gen.get(u32(0))!.readUInt32LE(0) & 1;
  gen.ref.close();
  const target = openPinned(sensor, `vc_counts${cur}`, stride(sensor));
  for (let i = 0; i < FLOWS; i += 10_000) {
    const entries: [Buffer, Buffer][] = [];
    for (let j = i; j < Math.min(FLOWS, i + 10_000); j++) entries.push([flowKey(vm, j), flowCounts(j, stride(sensor))]);
    target.setBatch(entries);
  }
  return target;
}

const mib = (b: number) => b / 2 ** 20;

export async function timeRead(sensor: EbpfSensor, vm: number): Promise<ReadSample> {
  await sensor.read(); // both maps empty, whichever is active
  const kernelMs = timeBareDrain(sensor, vm);
  fillActive(sensor, vm).ref.close();
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

/** Fills the active map, then drains it as read() does but without decoding or merging: the kernel's share. */
function timeBareDrain(sensor: EbpfSensor, vm: number): number {
  const map = fillActive(sensor, vm);
  const t0 = process.hrtime.bigint();
  let n = 0;
  drainMap(map, BATCH, () => n++);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  map.ref.close();
  if (n !== FLOWS) throw new Error(`drained ${n} flows, filled ${FLOWS}`);
  return ms;
}

/**
 * Decoding alone (no kernel), FLOWS entries whose values hold `n` CPUs'
 * counters: what summing per-CPU values costs on a host with n CPUs, measured
 * here for any n.
 */
export function decodeMs(n: number): number {
  const keys = Array.from({ length: FLOWS }, (_, i) => flowKey(1, i));
  const values = Array.from({ length: FLOWS }, (_, i) => flowCounts(i, COUNTS.size * n));
  const t0 = process.hrtime.bigint();
  let sum = 0;
  for (let i = 0; i < FLOWS; i++) sum += decodeFlow(keys[i]!, values[i]!).packets;
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (sum <= 0) throw new Error('decoded nothing');
  return ms;
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
export const range = (xs: number[], digits = 0) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)})`;
const int = (x: number) => Math.round(x).toLocaleString('en-US');

/**
 * A read on a host with `n` CPUs, from what was measured here (C CPUs): the
 * read here, plus the kernel's copy of (n - C) more values per flow (per CPU:
 * (per-CPU bare drain - shared bare drain) / (C - 1)), plus summing n values
 * instead of C (decoding measured at both sizes).
 */
export function readAt(n: number, m: { readMs: number; perCpuBareMs: number; sharedBareMs: number; decodeHereMs: number; decodeThereMs: number }): number {
  const kernelPerCpu = Math.max(0, m.perCpuBareMs - m.sharedBareMs) / Math.max(1, cpus - 1);
  return m.readMs + (n - cpus) * kernelPerCpu + (m.decodeThereMs - m.decodeHereMs);
}

export function readTable(rows: [string, ReadSample[]][]): string {
  const each = (reads: ReadSample[], f: (r: ReadSample) => number) => reads.map((r) => f(r).toFixed(1)).join(', ');
  return table(
    ['FLOW MAPS', 'SENSOR.READ() MS', 'BARE BATCH GET+DELETE MS', 'RSS GROWTH MIB (EACH)', 'HEAP GROWTH MIB', 'HEAP RETAINED MIB', 'FLOWS RETURNED'],
    rows.map(([label, reads]) => [
      label,
      range(reads.map((r) => r.ms)),
      range(reads.map((r) => r.kernelMs)),
      each(reads, (r) => r.rssMiB),
      median(reads.map((r) => r.heapMiB)).toFixed(1),
      median(reads.map((r) => r.retainedMiB)).toFixed(1),
      reads.map((r) => int(r.flows)).join(', '),
    ]),
  );
}

export { cpus };
