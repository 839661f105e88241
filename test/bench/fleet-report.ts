/**
 * The fleet bench's tables (test/bench/fleet.ts): the fleet table, the targets at 50,000 VMs with
 * pass or MISS, and for a miss or a size not run, the straight line through the measured sizes.
 */

/** What one size measured: medians over the measured periods. */
export interface SizeResult {
  vms: number;
  hosts: number;
  groups: number;
  /** Directed pairs reported in a period. */
  pairs: number;
  /** The first period's ingest: every pair new to the pair dictionary. */
  firstIngestMs: number;
  ingestMs: number;
  /** CPU seconds Redis spent during the ingest. */
  redisCpuS: number;
  /** used_memory a period added, per pair (its packed reports, its readable zsets, the dictionary's new members). */
  bytesPerPair: number;
  /** Of which the packed reports (MEMORY USAGE), per pair. */
  packedPerPair: number;
  queryMs: number;
  /** The round's read: readCollector (the weighted query, the registry and the directory). */
  readMs: number;
  /** decide(): groups and plan. */
  planMs: number;
  endToEndMs: number;
  moves: number;
  planGroups: number;
  /** used_memory at the end (bytes). */
  redisBytes: number;
  /** The bench's largest heap after a round (bytes), and how long the size took to run. */
  heapBytes: number;
  wallMs: number;
  periods: number;
}

type Metric = 'ingestMs' | 'planMs' | 'endToEndMs';

export const TARGETS: readonly { metric: Metric; what: string; ms: number }[] = [
  { metric: 'ingestMs', what: 'ingest (period end -> every report queryable)', ms: 2000 },
  { metric: 'planMs', what: 'plan (groups + plan: decide)', ms: 3000 },
  { metric: 'endToEndMs', what: 'period end -> plan ready', ms: 6000 },
];
export const TARGET_VMS = 50_000;

/** Per metric, ms = a + b × VMs, least squares over the sizes run (undefined with fewer than two). */
export type Fit = Partial<Record<Metric, { a: number; b: number }>>;

export function fitLine(done: readonly SizeResult[]): Fit {
  const out: Fit = {};
  if (done.length < 2) return out;
  for (const { metric } of TARGETS) {
    const xs = done.map((d) => d.vms);
    const ys = done.map((d) => d[metric]);
    const mx = xs.reduce((s, x) => s + x, 0) / xs.length;
    const my = ys.reduce((s, y) => s + y, 0) / ys.length;
    const sxy = xs.reduce((s, x, i) => s + (x - mx) * (ys[i]! - my), 0);
    const sxx = xs.reduce((s, x) => s + (x - mx) ** 2, 0);
    const b = sxy / sxx;
    out[metric] = { a: my - b * mx, b };
  }
  return out;
}

const s = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
const n = (x: number) => Math.round(x).toLocaleString('en');

export function tableBlock(done: readonly SizeResult[], target: string, measured: number, span: number, load: string): string {
  return [
    `Into ${target}; ${measured} measured periods after ${span - 1} that fill the manager's span (${span} periods), medians; 50 VMs per host, 4 sites, 20 peers per VM; ${load}.`,
    '',
    '| VMs | hosts | pairs per period | ingest (first period: every pair new) | Redis CPU during ingest | Redis memory a period adds, per pair (packed reports) | weighted query | round read (query + registry) | plan (decide) | period end → plan ready | moves, groups |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...done.map(
      (d) =>
        `| ${n(d.vms)} | ${n(d.hosts)} | ${n(d.pairs)} | ${s(d.ingestMs)} (${s(d.firstIngestMs)}) | ${d.redisCpuS.toFixed(1)} s | ${d.bytesPerPair.toFixed(0)} B (${d.packedPerPair.toFixed(1)} B) | ${s(d.queryMs)} | ${s(d.readMs)} | ${s(d.planMs)} | ${s(d.endToEndMs)} | ${d.moves}, ${n(d.planGroups)} |`,
    ),
  ].join('\n');
}

/** The size at which the line reaches `ms` (undefined when it never does, or always does). */
function sizeAt(f: { a: number; b: number }, ms: number): number | undefined {
  if (f.b <= 0) return undefined;
  const v = (ms - f.a) / f.b;
  return v > 0 ? v : undefined;
}

function slopeText(f: { a: number; b: number } | undefined, target: number): string {
  if (!f) return 'one size only: no slope';
  const at = sizeAt(f, target);
  return `slope ${s(f.b * 10_000)} per 10,000 VMs; at this slope 100,000 VMs take ${s(f.a + f.b * 100_000)}${at === undefined ? '' : `, and the target holds up to about ${n(Math.floor(at / 1000) * 1000)} VMs`}`;
}

export function targetsBlock(done: readonly SizeResult[], fit: Fit): string {
  const at = done.find((d) => d.vms === TARGET_VMS);
  const rows = TARGETS.map(({ metric, what, ms }) => {
    const f = fit[metric];
    if (!at) {
      const guess = f ? f.a + f.b * TARGET_VMS : undefined;
      return `| ${what} | ≤ ${s(ms)} | not run; ${guess === undefined ? 'no slope' : `${s(guess)} by the line`} | ${slopeText(f, ms)} |`;
    }
    const pass = at[metric] <= ms;
    return `| ${what} | ≤ ${s(ms)} | **${pass ? 'pass' : 'MISS'}**: ${s(at[metric])} | ${pass ? '' : slopeText(f, ms)} |`;
  });
  return [
    `Targets at ${n(TARGET_VMS)} VMs (1M pairs a period), this 2-CPU machine:`,
    '',
    '| target | bound | measured | slope (straight line through the sizes run) |',
    '|---|---|---|---|',
    ...rows,
  ].join('\n');
}

export function summaryBlock(done: readonly SizeResult[], target: string): string {
  const rows = done.map((d) => `| ${n(d.vms)} | ${target} | ${s(d.ingestMs)} | ${d.bytesPerPair.toFixed(0)} B | ${s(d.queryMs)} | ${s(d.planMs)} | ${s(d.endToEndMs)} |`);
  const at = done.find((d) => d.vms === TARGET_VMS);
  const verdict = at
    ? TARGETS.map(({ metric, what, ms }) => `${what.replace(/ \(.*\)/, '')} ≤ ${s(ms)}: ${at[metric] <= ms ? 'pass' : 'MISS'} (${s(at[metric])})`).join('; ')
    : `${n(TARGET_VMS)} VMs not run`;
  return [
    `The fleet simulator (\`node dist/test/bench/fleet.js\`: one simulated agent per host of 50 VMs, 20 peers per VM, through the agents' own publishing path; the manager's read and decide after each period):`,
    '',
    '| VMs | Redis | ingest | memory a period adds, per pair | weighted query | plan | period end → plan ready |',
    '|---:|---|---:|---:|---:|---:|---:|',
    ...rows,
    '',
    `Targets at ${n(TARGET_VMS)} VMs: ${verdict}. Slopes and the Cluster: [docs/measurements.md](docs/measurements.md#the-fleet).`,
  ].join('\n');
}
