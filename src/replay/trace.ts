import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { createGzip } from 'node:zlib';
import type { HostEntry, VmEntry } from '../collector/registry.js';
import type { MigrationRecord } from '../manager/history.js';
import type { DefaultLinks } from '../placement/fromCollector.js';

/**
 * A recorded trace: the collector's periods, the host registry, the VM
 * directory, the environment (one or more versions, each with the instant it
 * holds from) and the migration history, as gzip'd JSON lines
 * (docs/replay.md shows a file). The first line is the header (format and
 * version), the last the end record (how many periods): a file cut short is
 * told from a whole one. Names are listed once (`names` lines, appended as
 * periods need them) and periods name pairs by index, so a day of a thousand
 * VMs stays a few tens of MB.
 *
 * Compatibility: a reader takes every version up to its own (TRACE_VERSION)
 * and refuses a newer one, saying so; a new version only adds record types or
 * optional fields, so an older trace reads the same for ever.
 */
export const TRACE_FORMAT = 'virt-cohort-trace';
export const TRACE_VERSION = 1;

/** One period's traffic, as the collector resolves it (addresses to VM names), counts per period. */
export interface TracePeriod {
  /** Unix seconds. */
  start: number;
  /** Indexes into Trace.names. */
  src: Int32Array;
  dst: Int32Array;
  messages: Float64Array;
  bytes: Float64Array;
  /** Hosts whose report counts in it. */
  reported: string[];
  /** Hosts whose part was estimated from their report of an earlier period (the query's approximate answer). */
  estimated: string[];
}

/**
 * The environment from `at` (Unix ms) on: the file's content (environment-file JSON), or null
 * when the manager derives it from the host registry, with `defaults` for the links and capacity.
 */
export interface EnvVersion {
  at: number;
  file: object | null;
  defaults: DefaultLinks;
  /** Where it came from, for a person (a path, `lab NAME`, `registry`, `Redis version N: ...`). */
  source: string;
  /** The version stored in Redis (virt-cohort env history), when it is one. */
  version?: number;
}

export interface Trace {
  version: number;
  /** Unix ms. */
  recordedAt: number;
  /** What was recorded (a Redis URL without credentials, a lab, a generator and its seed). */
  source: string;
  periodSeconds: number;
  names: string[];
  /** Oldest first, each start a multiple of periodSeconds. */
  periods: TracePeriod[];
  hosts: HostEntry[];
  /** The directory at recordedAt. */
  vms: VmEntry[];
  /** Oldest first; at least one. */
  environments: EnvVersion[];
  /** Migrations made over the trace, oldest first. */
  migrations: MigrationRecord[];
}

/** The record types of a trace file, each line `{"t": TYPE, ...}`. */
export type Line =
  | { t: 'header'; format: string; version: number; recordedAt: number; source: string; periodSeconds: number }
  | ({ t: 'host' } & HostEntry)
  | ({ t: 'vm' } & VmEntry)
  | ({ t: 'env' } & EnvVersion)
  | ({ t: 'migration' } & MigrationRecord)
  | { t: 'names'; from: number; names: string[] }
  | { t: 'period'; p: number; s: number[]; d: number[]; m: number[]; b: number[]; h: string[]; e?: string[] }
  | { t: 'end'; periods: number };

/** The file's lines, in order; names are given just before the first period that uses them. */
export function* traceLines(tr: Trace): Generator<string> {
  const head: Line = { t: 'header', format: TRACE_FORMAT, version: TRACE_VERSION, recordedAt: tr.recordedAt, source: tr.source, periodSeconds: tr.periodSeconds };
  yield JSON.stringify(head);
  for (const e of tr.environments) yield JSON.stringify({ t: 'env', ...e });
  for (const h of tr.hosts) yield JSON.stringify({ t: 'host', ...h });
  for (const v of tr.vms) yield JSON.stringify({ t: 'vm', ...v });
  for (const m of tr.migrations) yield JSON.stringify({ t: 'migration', ...m });
  let named = 0;
  for (const p of tr.periods) {
    let top = -1;
    for (let i = 0; i < p.src.length; i++) top = Math.max(top, p.src[i]!, p.dst[i]!);
    if (top >= named) {
      yield JSON.stringify({ t: 'names', from: named, names: tr.names.slice(named, top + 1) });
      named = top + 1;
    }
    const line: Line = { t: 'period', p: p.start, s: [...p.src], d: [...p.dst], m: [...p.messages], b: [...p.bytes], h: p.reported, ...(p.estimated.length && { e: p.estimated }) };
    yield JSON.stringify(line);
  }
  yield JSON.stringify({ t: 'end', periods: tr.periods.length });
}

/** Writes the trace to `path`, gzip'd; the file is complete only when this resolves. */
export async function writeTrace(path: string, tr: Trace): Promise<void> {
  const gz = createGzip({ level: 6 });
  const out = createWriteStream(path, { mode: 0o644 });
  const done = new Promise<void>((resolve, reject) => {
    out.on('finish', resolve);
    out.on('error', reject);
    gz.on('error', reject);
  });
  gz.pipe(out);
  let chunk = '';
  for (const l of traceLines(tr)) {
    chunk += `${l}\n`;
    if (chunk.length > 1 << 20) {
      if (!gz.write(chunk)) await once(gz, 'drain');
      chunk = '';
    }
  }
  gz.end(chunk);
  await done;
}

/** A period of the trace as pairs of names (what the collector's detail query gives). */
export function periodPairs(tr: Trace, p: TracePeriod): { src: string; dst: string; messages: number; bytes: number }[] {
  return Array.from(p.src, (s, i) => ({ src: tr.names[s]!, dst: tr.names[p.dst[i]!]!, messages: p.messages[i]!, bytes: p.bytes[i]! }));
}

/** Adds the pairs of one period to a trace being built, naming new endpoints as they come. */
export function addPeriod(
  tr: Trace,
  index: Map<string, number>,
  start: number,
  pairs: readonly { src: string; dst: string; messages: number; bytes: number }[],
  reported: string[],
  estimated: string[] = [],
): void {
  const id = (n: string) => {
    let i = index.get(n);
    if (i === undefined) {
      index.set(n, (i = tr.names.length));
      tr.names.push(n);
    }
    return i;
  };
  tr.periods.push({
    start,
    src: Int32Array.from(pairs, (x) => id(x.src)),
    dst: Int32Array.from(pairs, (x) => id(x.dst)),
    messages: Float64Array.from(pairs, (x) => x.messages),
    bytes: Float64Array.from(pairs, (x) => x.bytes),
    reported,
    estimated,
  });
}
