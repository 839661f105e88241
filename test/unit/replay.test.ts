import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { DEFAULT_MANAGER } from '../../src/manager/config.js';
import { parseEnvironment } from '../../src/placement/env.js';
import { strategies } from '../../src/replay/compare.js';
import { replay, type ReplaySettings } from '../../src/replay/replay.js';
import { traceLines, writeTrace } from '../../src/replay/trace.js';
import { run } from '../../src/util/exec.js';
import { CORPUS } from '../helpers/corpus.js';
import { clique, generate, type Scenario } from '../helpers/traces.js';

const CLI = new URL('../../src/cli/main.js', import.meta.url).pathname;
const base: ReplaySettings = { ...DEFAULT_MANAGER };
/** Two groups of 4, each split over the sites, talking steadily for an hour. */
const steady: Scenario = { name: 'steady', vms: 8, periods: 120, flows: () => [...clique(['vm00', 'vm01', 'vm02', 'vm03'], 20), ...clique(['vm04', 'vm05', 'vm06', 'vm07'], 20)] };

test('a replay brings split groups together: traffic follows each moved VM, and each move costs its memory over the link', () => {
  const tr = generate(steady, 3);
  const r = replay(tr, base);
  assert.ok(r.moves.length >= 4, `moves: ${r.moves.map((m) => `${m.vm} ${m.from}>${m.to}`).join(', ')}`);
  const first = r.series.slice(0, 4).reduce((a, p) => a + p.interSiteBytes, 0);
  assert.ok(first > 0, 'split at first');
  assert.deepEqual(
    r.series.slice(-10).map((p) => p.interSiteBytes),
    new Array(10).fill(0),
    'together at the end: nothing crosses',
  );
  assert.equal(r.gibMigrated, r.moves.length * 2, 'every VM has 2 GiB');
  // 2 GiB over 1 Gbit/s at 0.02 per GB, each move from one site to the other.
  const crossing = r.moves.filter((m) => m.from[0] !== m.to[0]).length;
  assert.ok(Math.abs(r.costs.migration - crossing * 2 * 1.073741824 * 0.02) < 1e-9, `migration cost ${r.costs.migration}`);
  for (const m of r.moves) if (m.from[0] !== m.to[0]) assert.ok(Math.abs(m.seconds - (2 * 1073741824 * 8) / 1e9) < 1e-9);
  assert.equal(r.pingPong, 0);
});

test('the same trace and options give the same result, and a VM is never moved again within its cooldown', () => {
  const tr = generate({ ...CORPUS[3]!, periods: 240 }, 5);
  const a = replay(tr, { ...base, confirmRounds: 1, cooldownMs: 300_000 });
  const b = replay(tr, { ...base, confirmRounds: 1, cooldownMs: 300_000 });
  assert.deepEqual(a, b);
  const last = new Map<string, number>();
  let count = new Map<string, number>();
  for (const m of a.moves) {
    const prev = last.get(m.vm);
    // The cooldown doubles with each repeat: 5 min, 10 min, ... (at most a day), as live.
    if (prev !== undefined) assert.ok(m.at - prev >= 300_000 * 2 ** ((count.get(m.vm) ?? 1) - 1), `${m.vm} moved again ${(m.at - prev) / 1000} s after`);
    count = count.set(m.vm, (count.get(m.vm) ?? 0) + 1);
    last.set(m.vm, m.at);
  }
  assert.ok(a.moves.length > 0);
});

test('a move the plan made room with is held: no host is overfilled (the replay threw here before decide() checked it)', () => {
  const r = replay(generate(CORPUS[0]!, 1), base);
  assert.ok(r.moves.length > 0);
});

test("the operator's rules hold in a replay as live: a VM that must stay in site a never leaves it, and its group gathers there", () => {
  const tr = generate(steady, 3);
  const free = replay(tr, base);
  // Without the rule, the first group gathers on both sites' hosts in turn; pick a VM that moved to site b.
  const mover = free.moves.find((m) => m.to.startsWith('b'))?.vm;
  assert.ok(mover, `some VM moves to site b without rules: ${free.moves.map((m) => `${m.vm} ${m.from}>${m.to}`).join(', ')}`);
  const ruled = replay(tr, { ...base, rules: [{ vms: [mover], must: { site: 'a' } }], rulesFile: 'test' });
  assert.ok(!ruled.moves.some((m) => m.vm === mover && m.to.startsWith('b')), `${mover} never moves to site b: ${ruled.moves.map((m) => `${m.vm} ${m.from}>${m.to}`).join(', ')}`);
  assert.deepEqual(
    ruled.series.slice(-5).map((p) => p.interSiteBytes),
    new Array(5).fill(0),
    'and the groups still end together',
  );
});

test('VMs on hosts the environment given lacks are said, never moved, and counted as fixed endpoints', () => {
  const tr = generate(steady, 3);
  // Site a only: the hosts of site b, and their VMs, are not in it.
  const env = parseEnvironment({ sites: { a: {} }, hosts: { a1: { site: 'a' }, a2: { site: 'a' } } });
  const r = replay(tr, base, { env });
  const inB = tr.vms.filter((v) => v.host[0] === 'b').map((v) => v.name);
  assert.ok(inB.length > 0);
  for (const v of inB)
    assert.ok(
      r.notes.some((n) => n.includes(`VM ${v} is left out`)),
      `said: ${r.notes.join(' | ')}`,
    );
  assert.deepEqual(
    r.moves.filter((m) => inB.includes(m.vm)),
    [],
  );
  // Their traffic is that of endpoints in no known site: left out of the bytes whose sites are known.
  const inA = new Set(tr.vms.filter((v) => v.host[0] === 'a').map((v) => v.name));
  const known = tr.periods.reduce((a, p) => a + p.bytes.reduce((x, b, j) => x + (inA.has(tr.names[p.src[j]!]!) && inA.has(tr.names[p.dst[j]!]!) ? b : 0), 0), 0);
  assert.ok(known > 0);
  assert.equal(r.costs.knownBytes, known);
  assert.equal(r.costs.interSiteBytes, 0);
});

test('strategies: every combination of the values given, named by what varies', () => {
  const list = strategies(base, { method: ['cohesive', 'seed'], confirmRounds: ['1', '3'], horizon: ['30m'] });
  assert.deepEqual(
    list.map((s) => s.name),
    ['cohesive, confirm 1', 'cohesive, confirm 3', 'seed, confirm 1', 'seed, confirm 3'],
  );
  assert.equal(list[3]!.settings.horizonSeconds, 1800);
  assert.equal(list[3]!.settings.method, 'seed');
  assert.throws(() => strategies(base, { method: ['metis'] }), /--method 'metis' is not one of cohesive, louvain, seed/);
  assert.throws(() => strategies(base, { confirmRounds: ['0'] }), /--confirm-rounds '0' is not a whole number of 1 or more/);
});

test('virt-cohort replay: one table, strategies side by side, the same output twice; --json and --svg; a damaged trace refused', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vc-replay-cli-'));
  try {
    const file = join(dir, 't.gz');
    await writeTrace(file, generate(steady, 3));
    const args = [CLI, 'replay', file, '--no-config', '--method', 'cohesive,seed', '--svg', join(dir, 'r.svg')];
    const one = await run(process.execPath, args);
    const two = await run(process.execPath, args);
    assert.equal(one, two);
    assert.match(one, /STRATEGY\s+INTER-SITE\s+MOVES\s+GIB MIGRATED\s+PING-PONG\s+COST\s+TIME SPLIT/);
    assert.match(one, /\ncohesive\s+\S+ \S+ \(\S+ %\)\s+\d+\s+[\d.]+\s+0\s+[\d.]+\s+\d:\d\d of 1:00\n/);
    assert.match(one, /\nseed\s/);
    const svg = await readFile(join(dir, 'r.svg'), 'utf8');
    assert.equal(svg.match(/<polyline/g)?.length, 2);
    const json = JSON.parse(await run(process.execPath, [CLI, 'replay', file, '--no-config', '--json']));
    assert.equal(json.strategies.length, 1);
    assert.equal(json.strategies[0].moves, json.strategies[0].movesMade.length);
    const lines = [...traceLines(generate(steady, 3))];
    await writeFile(join(dir, 'cut.gz'), gzipSync(lines.slice(0, 60).join('\n')));
    const bad = await run(process.execPath, [CLI, 'replay', join(dir, 'cut.gz'), '--no-config']).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(bad?.code, 2);
    assert.match(bad!.stderr, /cut\.gz line 60 \(after period 2026-11-02T00:\d\d:\d\dZ\): the trace stops without its end record: it is truncated/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
