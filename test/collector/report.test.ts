import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';
import { Registry, type HostRecord } from '../../src/collector/registry.js';
import { Store } from '../../src/collector/store.js';
import { matrixSvg } from '../../src/demo/svg.js';
import { recordMigration } from '../../src/manager/history.js';
import { packageRoot } from '../../src/paths.js';
import { TestRedis } from '../helpers/redis.js';
import { L, report } from './fixtures.js';

const MAIN = join(packageRoot, 'dist/src/cli/main.js');
const GiB = 1 << 20; // KiB
const MINUTE = 60_000;
let server: TestRedis;
let dir: string;
const dbs: Redis[] = [];
let filledAt = 0;

const { VIRT_COHORT_REDIS: _ignored, ...childEnv } = process.env;

interface Run {
  code: number;
  out: string;
  err: string;
}

function cli(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { timeout: 60_000, env: childEnv, maxBuffer: 64 << 20 }, (e, out, err) => {
      resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out, err });
    });
  });
}

const url = (db: number) => `${server.url}/${db}`;

function hostRecord(site: string): HostRecord {
  return { site, uri: 'qemu:///system', cpus: 8, memoryKiB: 8 * GiB, freeMemoryKiB: 6 * GiB, vms: 2, sensor: 'ebpf', periodSeconds: L };
}

/** Where each VM runs: group web (web1..web3) and group db (db1, db2), both split over sites a and b. */
const PLACE: Record<string, [host: string, site: string]> = {
  web1: ['a1', 'a'],
  web2: ['a1', 'a'],
  web3: ['b1', 'b'],
  db1: ['a2', 'a'],
  db2: ['b1', 'b'],
};
/** Messages per period, sender > receiver; bytes are 500 per message. The 1-message pair joins the groups faintly. */
const TRAFFIC: [string, number][] = [
  ['web1>web2', 3000],
  ['web2>web1', 3000],
  ['web1>web3', 1500],
  ['web3>web1', 1500],
  ['web2>web3', 600],
  ['web3>web2', 600],
  ['db1>db2', 900],
  ['db2>db1', 900],
  ['web1>db1', 3],
];

/** Periods from 130 periods ago (a 1 h span at 30 s needs 120) to a few ahead, so every span the CLI asks is complete. */
async function fill(db: number, opts: { periods?: boolean } = {}): Promise<void> {
  const redis = new Redis(url(db));
  dbs.push(redis);
  const store = new Store(redis);
  const registry = new Registry(redis);
  const now = Date.now();
  const current = Math.floor(now / 1000 / L) * L;
  await redis.hset(K.settings, 'periodSeconds', L);
  for (const [h, s] of [
    ['a1', 'a'],
    ['a2', 'a'],
    ['b1', 'b'],
    ['b2', 'b'],
  ] as const)
    await registry.registerHost(h, hostRecord(s), now - 3 * 3_600_000);
  for (const [vm, [h, s]] of Object.entries(PLACE)) {
    await registry.putVm(vm, { uuid: '', host: h, site: s, state: 'running', mac: '', addresses: [], memoryKiB: GiB, vcpus: 1 });
  }
  if (opts.periods !== false) {
    // Each host reports what its VMs receive.
    const byHost = new Map<string, [string, number, number][]>();
    for (const [pair, n] of TRAFFIC) {
      const host = PLACE[pair.split('>')[1]!]![0];
      byHost.set(host, [...(byHost.get(host) ?? []), [pair, n, n * 500]]);
    }
    for (let p = current - 130 * L; p <= current + 5 * L; p += L) {
      for (const [h, s] of [
        ['a1', 'a'],
        ['a2', 'a'],
        ['b1', 'b'],
        ['b2', 'b'],
      ] as const) {
        await store.apply({ ...report(h, p, byHost.get(h) ?? []), site: s });
      }
    }
  }
  for (const [h, s] of [
    ['a1', 'a'],
    ['a2', 'a'],
    ['b1', 'b'],
    ['b2', 'b'],
  ] as const)
    await registry.registerHost(h, hostRecord(s), Date.now() + 600_000);
}

before(async () => {
  server = await TestRedis.start();
  dir = await mkdtemp(join(tmpdir(), 'vc-report-'));
  await fill(0);
  filledAt = Date.now();
  const redis = dbs[0]!;
  await recordMigration(redis, { vm: 'web3', from: 'b1', to: 'a2', outcome: 'ok', at: filledAt - 20 * MINUTE, seconds: 2.4, downtimeMs: 163, dataMiB: 69.9, reason: 'with web1, web2' });
  await recordMigration(redis, { vm: 'db2', from: 'b1', to: 'a2', outcome: 'failed', at: filledAt - 10 * MINUTE, seconds: 7.5, error: 'destination <refused> & gone' });
  await recordMigration(redis, { vm: 'web3', from: 'a2', to: 'b1', outcome: 'aborted', at: filledAt - 5 * MINUTE, seconds: 30, reason: 'timeout' });
  await recordMigration(redis, { vm: 'oldvm', from: 'a1', to: 'b2', outcome: 'ok', at: filledAt - 2 * 86_400_000, seconds: 3 });
  await fill(1, { periods: false }); // hosts and VMs, no period reported yet
});

after(async () => {
  for (const r of dbs) r.disconnect();
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

/**
 * Minimal well-formedness: every tag closes in order, attributes are quoted,
 * no stray `<` or `&` in text. Enough to catch a broken writer (an unescaped
 * name, a forgotten close) without an XML library.
 */
function checkXml(xml: string): number {
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  const stack: string[] = [];
  let elements = 0;
  let i = 0;
  while (i < body.length) {
    const lt = body.indexOf('<', i);
    const textPart = body.slice(i, lt < 0 ? body.length : lt);
    assert.doesNotMatch(textPart, /&(?!(amp|lt|gt|quot|#\d+);)/, `bare & in text: ${textPart.slice(0, 80)}`);
    assert.doesNotMatch(textPart, />/, `stray > in text: ${textPart.slice(0, 80)}`);
    if (lt < 0) break;
    const gt = body.indexOf('>', lt);
    assert.ok(gt > lt, `unclosed tag at ${lt}`);
    const tag = body.slice(lt + 1, gt);
    assert.doesNotMatch(tag, /</, `'<' inside a tag: ${tag.slice(0, 80)}`);
    const close = /^\/([A-Za-z][\w:.-]*)\s*$/.exec(tag);
    if (close) {
      assert.equal(stack.pop(), close[1], `</${close[1]}> closes the wrong element`);
    } else {
      const open = /^([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"]*")*)\s*(\/?)$/.exec(tag);
      assert.ok(open, `malformed tag <${tag.slice(0, 120)}>`);
      elements++;
      if (!open[3]) stack.push(open[1]!);
    }
    i = gt + 1;
  }
  assert.deepEqual(stack, [], 'elements left open');
  assert.ok(body.trimStart().startsWith('<svg'), 'the root is <svg>');
  return elements;
}

interface ReportJson {
  span: { type: string; periods: number; periodSeconds: number; approximate: boolean };
  vms: { name: string; host: string; site: string; group: number }[];
  groups: { id: number; members: string[]; sites: string[] }[];
  sites: { name: string; hosts: string[] }[];
  hosts: { name: string; site: string; live: boolean; vms: string[] }[];
  matrix: { vms: string[]; cells: { src: string; dst: string; row: number; col: number; messages: number; bytes: number }[]; max: { messages: number; bytes: number } };
  interSite: { share: number; bytes: number; totalBytes: number; pairs: { sites: string[]; bytes: number }[] };
  migrations: { vm: string; from: string; to: string; outcome: string }[];
}

test('report --svg --html: a well-formed SVG and a self-contained page with the VMs, groups, sites and migrations', async () => {
  const svg = join(dir, 'r.svg');
  const html = join(dir, 'r.html');
  const r = await cli('report', '--redis', url(0), '--svg', svg, '--html', html);
  assert.equal(r.code, 0, r.err);
  assert.match(
    r.out,
    /^mean over 120 period\(s\) of 30 s, .*\n5 running VM\(s\) in 2 group\(s\) of 2 or more, on 4 host\(s\) in 2 site\(s\); inter-site [\d.]+ % of VM-to-VM bytes; 3 migration\(s\) \(1 ok\)\n/,
  );
  assert.match(r.out, new RegExp(`wrote ${svg}\nwrote ${html}\n$`));

  const s = await readFile(svg, 'utf8');
  assert.ok(checkXml(s) > 50);
  assert.match(s, /^<\?xml version="1.0" encoding="UTF-8"\?>\n<svg xmlns="http:\/\/www.w3.org\/2000\/svg" /);
  for (const vm of Object.keys(PLACE)) assert.ok(s.includes(`>${vm} (`), `the matrix labels ${vm}`);
  assert.match(s, /group 1: web1, web2, web3/);
  assert.match(s, /group 2: db1, db2/);
  assert.match(s, /destination &lt;refused&gt; &amp; gone/, 'names and errors are escaped');
  assert.ok(!s.includes('oldvm'), 'a migration before the span is left out');

  const h = await readFile(html, 'utf8');
  assert.match(h, /^<!DOCTYPE html>\n<html lang="en">/);
  assert.match(h, /<\/html>\n$/);
  assert.doesNotMatch(h, /<script|<link|<img|\ssrc=|href=|url\(|@import/i, 'nothing external');
  const inline = h.match(/<svg[\s\S]*?<\/svg>/g) ?? [];
  assert.equal(inline.length, 3, 'matrix, sites, timeline');
  for (const x of inline) checkXml(x);
  for (const vm of Object.keys(PLACE)) assert.ok(h.includes(`>${vm}</span>`), `the page names ${vm}`);
  assert.match(h, /group 1<\/td><td>(<span class="pill"[^>]*>web[123]<\/span> ?){3}<\/td>/);
  assert.match(h, /group 2<\/td><td>(<span class="pill"[^>]*>db[12]<\/span> ?){2}<\/td>/);
  assert.match(h, /a ↔ b/);
  const rows = h.match(/<tr class="migration">.*<\/tr>/g) ?? [];
  assert.equal(rows.length, 3);
  assert.match(
    rows[0]!,
    />web3<\/span><\/td><td>b1 → a2<\/td><td class="ok"[^>]*>ok<\/td><td class="num">2.4 s<\/td><td class="num">163 ms<\/td><td class="num">69.9 MiB<\/td><td>with web1, web2<\/td>/,
  );
  assert.match(rows[1]!, />db2<\/span><\/td><td>b1 → a2<\/td><td class="failed"[^>]*>failed<\/td><td class="num">7.5 s<\/td><td class="num">-<\/td>.*destination &lt;refused&gt; &amp; gone/);
  assert.match(rows[2]!, />web3<\/span><\/td><td>a2 → b1<\/td><td class="aborted"/);
  assert.ok(!h.includes('oldvm'));
});

test('report --json: the matrix numbers per second, the groups, the sites and the inter-site share', async () => {
  const r = await cli('report', '--redis', url(0), '--json', '--span', '10m');
  assert.equal(r.code, 0, r.err);
  const d = JSON.parse(r.out) as ReportJson;
  assert.equal(d.span.type, 'mean');
  assert.equal(d.span.periods, 20);
  assert.equal(d.span.approximate, false);
  assert.deepEqual(
    d.groups.map((g) => g.members),
    [
      ['web1', 'web2', 'web3'],
      ['db1', 'db2'],
    ],
  );
  assert.deepEqual(
    d.groups.map((g) => g.sites),
    [
      ['a', 'b'],
      ['a', 'b'],
    ],
  );
  assert.deepEqual(d.matrix.vms, ['web1', 'web2', 'web3', 'db1', 'db2']);
  assert.deepEqual(
    d.vms.map((v) => v.group),
    [0, 0, 0, 1, 1],
  );
  assert.equal(d.matrix.cells.length, TRAFFIC.length);
  for (const [pair, n] of TRAFFIC) {
    const [src, dst] = pair.split('>');
    const c = d.matrix.cells.find((x) => x.src === src && x.dst === dst);
    assert.ok(c, pair);
    assert.equal(c.row, d.matrix.vms.indexOf(src!));
    assert.equal(c.col, d.matrix.vms.indexOf(dst!));
    assert.ok(Math.abs(c.messages - n / L) < 1e-6, `${pair}: ${c.messages} msg/s, expected ${n / L}`);
    assert.ok(Math.abs(c.bytes - (n * 500) / L) < 1e-3, `${pair}: ${c.bytes} B/s`);
  }
  assert.equal(d.matrix.max.messages, 100);
  // Crossing sites: web1<>web3, web2<>web3, db1<>db2 (web1>db1 stays in site a).
  const cross = ((1500 + 1500 + 600 + 600 + 900 + 900) * 500) / L;
  const total = (TRAFFIC.reduce((s, [, n]) => s + n, 0) * 500) / L;
  assert.ok(Math.abs(d.interSite.bytes - cross) < 1e-3);
  assert.ok(Math.abs(d.interSite.totalBytes - total) < 1e-3);
  assert.ok(Math.abs(d.interSite.share - cross / total) < 1e-9);
  assert.deepEqual(
    d.interSite.pairs.map((p) => p.sites),
    [['a', 'b']],
  );
  assert.deepEqual(d.sites, [
    { name: 'a', hosts: ['a1', 'a2'] },
    { name: 'b', hosts: ['b1', 'b2'] },
  ]);
  assert.deepEqual(
    d.hosts.map((h) => [h.name, h.live, h.vms]),
    [
      ['a1', true, ['web1', 'web2']],
      ['a2', true, ['db1']],
      ['b1', true, ['db2', 'web3']],
      ['b2', true, []],
    ],
  );
  // The 10 min span began after the first migration ended: only the two later ones.
  assert.deepEqual(
    d.migrations.map((m) => [m.vm, m.outcome]),
    [
      ['db2', 'failed'],
      ['web3', 'aborted'],
    ],
  );

  const w = await cli('report', '--redis', url(0), '--json', '--span', '4', '--type', 'weighted', '--measure', 'messages', '--method', 'seed');
  assert.equal(w.code, 0, w.err);
  const dw = JSON.parse(w.out) as ReportJson & { span: { coefficient: number } };
  assert.equal(dw.span.type, 'weighted');
  assert.equal(dw.span.coefficient, 2);
  assert.equal(dw.span.periods, 4);
  assert.ok(Math.abs(dw.matrix.cells.find((c) => c.src === 'web1' && c.dst === 'web2')!.messages - 100) < 1e-6, 'the same traffic every period weighs the same');
});

test('report: bad input exits 2 with a message; a span the collector cannot answer yet exits 3', async () => {
  const out = join(dir, 'bad.svg');
  const cases: [string[], RegExp][] = [
    [['--redis', url(0)], /say what to produce: --svg FILE and\/or --html FILE/],
    [['--redis', url(0), '--svg', out, '--span', '0'], /the span must cover at least one period/],
    [['--redis', url(0), '--svg', out, '--span', 'soon'], /the span 'soon' is not a duration/],
    [['--redis', url(0), '--svg', out, '--type', 'detail'], /--type 'detail' is not usable here: use mean or weighted/],
    [['--redis', url(0), '--svg', out, '--measure', 'packets'], /--measure 'packets' is not known: use one of bytes, messages/],
    [['--redis', 'redis://127.0.0.1:1', '--svg', out], /nothing listens at redis:\/\/127.0.0.1:1 .*: start Redis .*, or correct redis.url \(--redis/],
    [['--redis', url(5), '--svg', out], /no host has registered in the collector: start the agents/],
    [['--redis', url(0), '--svg', join(dir, 'no/such/dir/r.svg')], /--svg: cannot write .*no\/such\/dir\/r.svg .*choose a writable path/],
    [['--redis', url(0), '--lab', 'nosuchlab', '--svg', out], /give either --redis or --lab, not both/],
  ];
  for (const [args, msg] of cases) {
    const r = await cli('report', ...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, msg, args.join(' '));
    assert.doesNotMatch(r.err, /unexpected error| {4}at /);
  }
  await assert.rejects(readFile(out), 'nothing written on bad input');

  const none = await cli('report', '--redis', url(1), '--svg', out);
  assert.equal(none.code, 3, none.err);
  assert.match(none.out, /cannot answer mean over 120 period\(s\) .*no period has been reported yet/);
  assert.match(none.err, /no report written: .*a shorter --span may be answerable now/);
  const long = await cli('report', '--redis', url(0), '--html', out, '--span', '3h');
  assert.equal(long.code, 3, long.err);
  assert.match(long.out, /the collector holds \d+ period\(s\) up to then.*ask for at most \d+/);
  const json = await cli('report', '--redis', url(1), '--json');
  assert.equal(json.code, 3);
  assert.equal((JSON.parse(json.out) as { status: string }).status, 'reformulate');
  await assert.rejects(readFile(out), 'nothing written when handed back');
});

test('matrixSvg (the demo picture) is well-formed and escapes names', () => {
  const s = matrixSvg(
    'demo <1> & co',
    [
      { name: 'vm1', site: 'a' },
      { name: 'vm"2', site: 'b' },
      { name: 'vm3', site: 'a' },
    ],
    [['vm1', 'vm"2'], ['vm3']],
    [
      { src: 'vm1', dst: 'vm"2', messages: 50, bytes: 1 },
      { src: 'vm"2', dst: 'vm1', messages: 0.5, bytes: 1 },
    ],
  );
  checkXml(s);
  assert.match(s, /demo &lt;1&gt; &amp; co/);
  assert.match(s, /vm&quot;2 \(b\)/);
  assert.match(s, /<title>vm1 → vm&quot;2: 50 msg\/s<\/title>/);
});
