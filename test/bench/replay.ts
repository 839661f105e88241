/**
 * Strategies and settings scored on the replay corpus: the traces recorded from
 * the lab (test/fixtures/*.trace.gz) and the generated ones with phases
 * (test/helpers/corpus.ts, six hours each, from fixed seeds). Every strategy
 * runs the manager's own decision (manager/decide.ts) through `replay`, with
 * the manager's defaults but for what the row changes.
 * - corpus: ours (cohesive), louvain and seed side by side, with no migration
 *   as the baseline: inter-site bytes, moves, ping-pong moves, per trace and in
 *   total.
 * - settings: ours with one setting changed at a time (confirm rounds,
 *   horizon, the reading's coefficient and span): what the defaults rest on.
 * - speed: a day of 30 s periods (2,880) of 1,000 VMs, read from its file and
 *   replayed with the defaults (target: at most 60 s).
 * Run: flock /tmp/vc-heavy.lock node dist/test/bench/replay.js [--quick] [--no-speed | --speed-only] [--write-docs]
 * (--quick: the first two hours of each generated trace, no speed row; --write-docs: blocks
 * `replay-corpus`, `replay-settings` and `replay-speed` of docs/measurements.md, `replay-summary` of README.md).
 */
import { readdirSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MANAGER } from '../../src/manager/config.js';
import { packageRoot } from '../../src/paths.js';
import { compare, fmtBytes, type Row, type Strategy } from '../../src/replay/compare.js';
import { readTrace } from '../../src/replay/read.js';
import { DEFAULT_PING_PONG_ROUNDS, type ReplaySettings } from '../../src/replay/replay.js';
import { writeTrace, type Trace } from '../../src/replay/trace.js';
import { CORPUS } from '../helpers/corpus.js';
import { generate, type Scenario } from '../helpers/traces.js';
import { daySpeedScenario } from '../helpers/corpus.js';
import { benchArgs, maybeWriteBlock } from './doc.js';

const { writeDocs, args } = benchArgs();
const quick = args.includes('--quick');
const speedOnly = args.includes('--speed-only');
const speed = !quick && !args.includes('--no-speed');
if (writeDocs && quick) throw new Error('--write-docs with --quick would write a shortened corpus into the documents: run without --quick');
const README = join(packageRoot, 'README.md');
const FIXTURES = join(packageRoot, 'test', 'fixtures');
/** Each generated scenario from these seeds: one seed is one roll of the noise. */
const SEEDS = [1, 2, 3];
const SEED = 1;

const base: ReplaySettings = { ...DEFAULT_MANAGER };
const say = (s: string) => process.stderr.write(`${s}\n`);

async function corpus(): Promise<{ name: string; trace: Trace }[]> {
  const out: { name: string; trace: Trace }[] = [];
  for (const f of readdirSync(FIXTURES)
    .filter((x) => x.endsWith('.trace.gz'))
    .sort())
    out.push({ name: `lab: ${f.replace('.trace.gz', '')}`, trace: await readTrace(join(FIXTURES, f)) });
  for (const s of CORPUS) for (const seed of SEEDS) out.push({ name: `${s.name} (${seed})`, trace: generate(quick ? { ...s, periods: 240 } : s, seed) });
  return out;
}

const METHODS: Strategy[] = [
  { name: 'ours (cohesive)', settings: { ...base, method: 'cohesive' } },
  { name: 'louvain', settings: { ...base, method: 'louvain' } },
  { name: 'seed', settings: { ...base, method: 'seed' } },
  { name: 'no migration', settings: { ...base, maxMoves: 0 } },
];

if (!speedOnly) await scoreCorpus();

async function scoreCorpus(): Promise<void> {
  const traces = await corpus();
  const cells = (r: Row) => `${fmtBytes(r.interSiteBytes)} / ${r.moves} / ${r.pingPong}`;

  // ---- strategies side by side -------------------------------------------------
  const byMethod = new Map<string, Row[]>(METHODS.map((m) => [m.name, []]));
  const lines: string[] = [`| trace | VMs | periods | ${METHODS.map((m) => m.name).join(' | ')} |`, `|---|---:|---:|${METHODS.map(() => '---:').join('|')}|`];
  for (const t of traces) {
    const rows = compare(t.trace, METHODS);
    rows.forEach((r, i) => byMethod.get(METHODS[i]!.name)!.push(r));
    lines.push(`| ${t.name} | ${t.trace.vms.length} | ${t.trace.periods.length} | ${rows.map(cells).join(' | ')} |`);
    say(lines.at(-1)!);
  }
  const total = (rs: Row[]) => ({
    bytes: rs.reduce((a, r) => a + r.interSiteBytes, 0),
    moves: rs.reduce((a, r) => a + r.moves, 0),
    pp: rs.reduce((a, r) => a + r.pingPong, 0),
    gib: rs.reduce((a, r) => a + r.gibMigrated, 0),
  });
  const totals = METHODS.map((m) => total(byMethod.get(m.name)!));
  lines.push(`| **all ${traces.length} traces** | | | ${totals.map((t) => `**${fmtBytes(t.bytes)} / ${t.moves} / ${t.pp}**`).join(' | ')} |`);
  const moving = totals.slice(0, 3);
  const best = moving.reduce((a, t, i) => (t.bytes < moving[a]!.bytes ? i : a), 0);
  const verdict =
    `Cells: inter-site bytes over the trace / moves / ping-pong moves (back to a host left within ${DEFAULT_PING_PONG_ROUNDS} rounds). Manager defaults (confirm ${base.confirmRounds} rounds, ` +
    `horizon ${base.horizonSeconds / 3600} h, reading ${base.span} periods weighted ${base.coefficient}, cooldown ${base.cooldownMs / 60_000} min, a round every ${base.everyPeriods} periods). ` +
    `Fewest inter-site bytes over the corpus: ${METHODS[best]!.name}; ping-pong moves, ours: ${totals[0]!.pp}.`;
  const corpusBlock = `${lines.join('\n')}\n\n${verdict}`;
  say(verdict);
  await maybeWriteBlock(writeDocs, 'replay-corpus', corpusBlock);

  // ---- ours, one setting at a time --------------------------------------------
  const VARIANTS: { name: string; s: Partial<ReplaySettings> }[] = [
    { name: 'defaults', s: {} },
    { name: 'the defaults before: span 4, coefficient 2, cooldown 10 min', s: { span: 4, coefficient: 2, cooldownMs: 600_000 } },
    { name: 'confirm 1 round', s: { confirmRounds: 1 } },
    { name: 'confirm 3 rounds', s: { confirmRounds: 3 } },
    { name: 'cooldown 10 min', s: { cooldownMs: 600_000 } },
    { name: 'span 4 periods', s: { span: 4 } },
    { name: 'span 16 periods', s: { span: 16 } },
    { name: 'coefficient 2', s: { coefficient: 2 } },
    { name: 'horizon 30 min', s: { horizonSeconds: 1800 } },
    { name: 'horizon 2 h', s: { horizonSeconds: 7200 } },
  ];
  // Columns by scenario, its seeds summed: inter-site bytes / moves / ping-pong moves.
  const scenarios = [...new Set(traces.map((t) => t.name.replace(/ \(\d+\)$/, '')))];
  const setLines = [`| ours with | ${scenarios.join(' | ')} | all |`, `|---|${scenarios.map(() => '---:').join('|')}|---:|`];
  for (const v of VARIANTS) {
    const rows = traces.map((t) => compare(t.trace, [{ name: v.name, settings: { ...base, method: 'cohesive', ...v.s } }])[0]!);
    const part = scenarios.map((sc) => total(rows.filter((_, i) => traces[i]!.name.replace(/ \(\d+\)$/, '') === sc)));
    const t = total(rows);
    const cell = (x: ReturnType<typeof total>) => `${fmtBytes(x.bytes)} / ${x.moves} / ${x.pp}`;
    setLines.push(`| ${v.name} | ${part.map(cell).join(' | ')} | ${cell(t)} |`);
    say(setLines.at(-1)!);
  }
  await maybeWriteBlock(writeDocs, 'replay-settings', setLines.join('\n'));

  // ---- the README's short form -------------------------------------------------
  const summary = [
    `| strategy | inter-site bytes, all ${traces.length} traces | moves | GiB migrated | ping-pong moves |`,
    '|---|---:|---:|---:|---:|',
    ...METHODS.map((m, i) => `| ${m.name} | ${fmtBytes(totals[i]!.bytes)} | ${totals[i]!.moves} | ${totals[i]!.gib.toFixed(0)} | ${totals[i]!.pp} |`),
  ].join('\n');
  await maybeWriteBlock(writeDocs, 'replay-summary', `${summary}\n\n${verdict.replace(/^Cells: [^.]*\. /, '')}`, README);
}

// ---- speed: a day of 1,000 VMs ----------------------------------------------
if (speed) {
  const s: Scenario = daySpeedScenario();
  const dir = await mkdtemp(join(tmpdir(), 'vc-replay-bench-'));
  try {
    const file = join(dir, 'day.trace.gz');
    const t0 = performance.now();
    await writeTrace(file, generate(s, SEED));
    const written = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    const tr = await readTrace(file);
    const read = (performance.now() - t1) / 1000;
    const pairs = tr.periods.reduce((a, p) => a + p.src.length, 0);
    const [row] = compare(tr, [{ name: 'ours', settings: { ...base, method: 'cohesive' } }]);
    const total = read + row!.replaySeconds;
    const block = [
      '| trace | file | read | replay (ours, defaults) | total | target |',
      '|---|---:|---:|---:|---:|---:|',
      `| ${s.vms} VMs, ${tr.periods.length} periods of ${tr.periodSeconds} s (${(pairs / tr.periods.length).toFixed(0)} pairs a period), ${row!.rounds} rounds, ${row!.moves} moves | ${((await stat(file)).size / 1e6).toFixed(1)} MB | ${read.toFixed(1)} s | ${row!.replaySeconds.toFixed(1)} s | ${total.toFixed(1)} s | ≤ 60 s ${total <= 60 ? '✓' : '✗'} |`,
    ].join('\n');
    say(`${block}\n(generating and writing the file: ${written.toFixed(1)} s, not counted)`);
    await maybeWriteBlock(writeDocs, 'replay-speed', block);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
