import { beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { K } from '../../src/collector/keys.js';
import { query } from '../../src/collector/query.js';
import { Registry } from '../../src/collector/registry.js';
import { Store } from '../../src/collector/store.js';
import { recordMigration } from '../../src/manager/history.js';
import { readTrace } from '../../src/replay/read.js';
import { recordTrace } from '../../src/replay/record.js';
import { replay } from '../../src/replay/replay.js';
import { periodPairs, writeTrace } from '../../src/replay/trace.js';
import { weightedAnswer } from '../../src/replay/view.js';
import { DEFAULT_MANAGER } from '../../src/manager/config.js';
import { fileRedis, hostRecord, L, report } from './fixtures.js';

// `virt-cohort record` against a real Redis: the trace holds each period as the
// collector's detail query gives it, the registry, the directory and the
// migrations; the replay's weighted reading of it is the live query's, bit for
// bit; and the replay starts from where the VMs were before the recorded moves.
const NOW = Date.parse('2026-03-02T12:00:10Z');
const NEWEST = NOW / 1000 - 10 - L;
const PERIODS = Array.from({ length: 6 }, (_, i) => NEWEST - (5 - i) * L);
const DEFAULTS = { latencyMs: 20, bandwidthMbit: 1000, cpuOvercommit: 4, reserveMemoryMiB: 512 };
const r = fileRedis();

beforeEach(async () => {
  await r.redis.flushall();
  await r.redis.hset(K.settings, 'periodSeconds', L);
  const reg = new Registry(r.redis);
  const store = new Store(r.redis);
  for (const [h, site] of [
    ['A', 'a'],
    ['B', 'b'],
  ] as const) {
    await reg.registerHost(h, hostRecord(site), NOW - 600_000);
    await reg.registerHost(h, hostRecord(site), NOW - 1000);
  }
  // v1 started on B and moved to A during the fourth period; v2 stays on B.
  const vm = (host: string, site: string) => ({ uuid: '', host, site, state: 'running' as const, mac: '', addresses: [], memoryKiB: 1 << 20, vcpus: 1 });
  await reg.putVm('v1', vm('A', 'a'), NOW - 60_000);
  await reg.putVm('v2', vm('B', 'b'), NOW - 600_000);
  await recordMigration(r.redis, { vm: 'v1', from: 'B', to: 'A', outcome: 'ok', at: (PERIODS[3]! + 5) * 1000, seconds: 3 });
  for (const [i, p] of PERIODS.entries()) {
    const moved = i > 3;
    await store.apply(report(moved ? 'A' : 'B', p, [['v1>v2', 10 + i, 1000 * (i + 1) + 7]]));
    await store.apply(
      report('B', p, [
        ['v2>v1', 5, 333 * (i + 1)],
        ['v2>10.0.9.5', 3 + i, 4096 * 3 + i],
      ]),
    );
  }
});

test('record: each period as the detail query gives it, with the registry, the directory and the migrations', async () => {
  const tr = await recordTrace(r.redis, { span: 6, defaults: DEFAULTS, source: 'test', now: NOW });
  assert.deepEqual(
    tr.periods.map((p) => p.start),
    PERIODS,
  );
  const detail = await query(r.redis, { type: 'detail', span: 6, now: NOW, approx: true });
  assert.equal(detail.status, 'ok');
  assert.ok(detail.type === 'detail');
  tr.periods.forEach((p, i) => assert.deepEqual(periodPairs(tr, p), detail.detail[i]!.pairs, `period ${i}`));
  assert.deepEqual(tr.periods[5]!.reported, ['A', 'B']);
  assert.deepEqual(tr.periods[0]!.reported, ['B']);
  assert.deepEqual(
    tr.hosts.map((h) => h.host),
    ['A', 'B'],
  );
  assert.deepEqual(
    tr.vms.map((v) => `${v.name}@${v.host}`),
    ['v1@A', 'v2@B'],
  );
  assert.deepEqual(
    tr.migrations.map((m) => `${m.vm} ${m.from}>${m.to}`),
    ['v1 B>A'],
  );
  assert.deepEqual(tr.environments, [{ at: PERIODS[0]! * 1000, file: null, defaults: DEFAULTS, source: 'registry' }]);
  const dir = await mkdtemp(join(tmpdir(), 'vc-record-'));
  try {
    await writeTrace(join(dir, 't.gz'), tr);
    assert.deepEqual(await readTrace(join(dir, 't.gz')), tr);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("the replay's reading of a trace is the live weighted query's, bit for bit", async () => {
  const tr = await recordTrace(r.redis, { span: 6, defaults: DEFAULTS, source: 'test', now: NOW });
  for (const [span, coefficient] of [
    [2, 2],
    [4, 1.5],
    [6, 1],
  ] as const) {
    const t = NEWEST + L;
    const live = await query(r.redis, { type: 'weighted', span, coefficient, now: t * 1000 + 2000, approx: true });
    const replayed = weightedAnswer(tr, t, span, coefficient, []);
    assert.equal(live.status, 'ok');
    assert.deepEqual(replayed.pairs, live.status === 'ok' && live.type !== 'detail' ? live.pairs : [], `span ${span}, coefficient ${coefficient}`);
  }
});

test('the replay starts from where the VMs were before the recorded moves', async () => {
  const tr = await recordTrace(r.redis, { span: 6, defaults: DEFAULTS, source: 'test', now: NOW });
  // No move allowed: v1 on B until the trace ends, so v1>v2 never crosses; only the file server (no site known) is left out.
  const still = replay(tr, { ...DEFAULT_MANAGER, maxMoves: 0, span: 2, everyPeriods: 1 });
  assert.equal(still.moves.length, 0);
  assert.equal(still.costs.interSiteBytes, 0);
  const known = tr.periods.reduce((a, p) => a + p.bytes.reduce((x, b, j) => x + (tr.names[p.dst[j]!] === '10.0.9.5' ? 0 : b), 0), 0);
  assert.equal(still.costs.knownBytes, known);
});

test('record: a span the collector does not hold is refused, saying what it holds', async () => {
  await assert.rejects(recordTrace(r.redis, { from: NOW + 3_600_000, defaults: DEFAULTS, source: 'test', now: NOW + 7_200_000 }), /the collector holds no period from .* record a span it holds/);
});
