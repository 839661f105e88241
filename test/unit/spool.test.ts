import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Report } from '../../src/collector/report.js';
import { Spool } from '../../src/agent/spool.js';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'vc-spool-'));
});
after(() => rm(root, { recursive: true, force: true }));

const report = (period: number, host = 'h1'): Report => ({
  v: 1,
  host,
  site: 's',
  period,
  length: 30,
  from: period * 1000,
  to: (period + 30) * 1000,
  pairs: [['a>b', period, 1]],
  overflow: { packets: 0, bytes: 0 },
  unknownTap: 0,
  vms: ['a'],
});

test('reports go out oldest first, each removed once sent; a failure stops the flush and keeps the order', async () => {
  const dir = join(root, 'order');
  const spool = await Spool.open(dir, 10);
  assert.equal((await stat(dir)).mode & 0o777, 0o700, 'reports stay root-only');
  for (const p of [1_800_000_060, 1_800_000_000, 1_800_000_030]) await spool.put(report(p));
  assert.equal(await spool.size(), 3);
  const sent: number[] = [];
  await assert.rejects(
    spool.flush(async (r) => {
      if (sent.length === 2) throw new Error('Redis down');
      sent.push(r.period);
    }),
    /Redis down/,
  );
  assert.deepEqual(sent, [1_800_000_000, 1_800_000_030]);
  assert.deepEqual(await spool.names(), ['001800000060-h1.json']);
  assert.equal(
    await spool.flush(async (r) => {
      sent.push(r.period);
    }),
    1,
  );
  assert.deepEqual(sent, [1_800_000_000, 1_800_000_030, 1_800_000_060]);
  assert.equal(await spool.size(), 0);
});

test('a report put again replaces its file; the spool is bounded: beyond max the oldest go, and are counted', async () => {
  const spool = await Spool.open(join(root, 'bounded'), 2);
  await spool.put(report(30));
  await spool.put(report(30));
  assert.equal(await spool.size(), 1);
  for (const p of [60, 90, 120]) await spool.put(report(p));
  assert.equal(spool.dropped, 2);
  const got: Report[] = [];
  await spool.flush(async (r) => {
    got.push(r);
  });
  assert.deepEqual(got, [report(90), report(120)], 'read back whole');
});

test('an unreadable file is set aside and the others still go; temporary files are not reports', async () => {
  const dir = join(root, 'bad');
  const spool = await Spool.open(dir, 10);
  await spool.put(report(60));
  await writeFile(join(dir, '000000000030-h1.json'), '{"v":1,"host":');
  await writeFile(join(dir, '000000000045-h1.json'), JSON.stringify({ v: 2, host: 'h1', period: 45, pairs: [] }));
  await writeFile(join(dir, '.000000000090-h1.json.tmp'), 'half written');
  const sent: number[] = [];
  assert.equal(
    await spool.flush(async (r) => {
      sent.push(r.period);
    }),
    1,
  );
  assert.deepEqual(sent, [60]);
  assert.deepEqual((await readdir(dir)).sort(), ['.000000000090-h1.json.tmp', '000000000030-h1.json.bad', '000000000045-h1.json.bad']);
});

test('reports are removed only once durable (on a replica): a failed wait keeps them all for the next flush, asked once per flush', async () => {
  const spool = await Spool.open(join(root, 'durable'), 10);
  for (const p of [1_800_000_000, 1_800_000_030]) await spool.put(report(p));
  const sent: number[] = [];
  let waits = 0;
  await assert.rejects(
    spool.flush(
      async (r) => {
        sent.push(r.period);
      },
      async () => {
        waits++;
        throw new Error('no replica acknowledged');
      },
    ),
    /no replica acknowledged/,
  );
  assert.deepEqual(sent, [1_800_000_000, 1_800_000_030]);
  assert.equal(waits, 1, 'one wait for the whole flush');
  assert.equal(await spool.size(), 2, 'both kept: sent again by the next flush (applied once)');
  assert.equal(
    await spool.flush(
      async (r) => {
        sent.push(r.period);
      },
      async () => {
        waits++;
      },
    ),
    2,
  );
  assert.equal(waits, 2);
  assert.equal(await spool.size(), 0);
});
