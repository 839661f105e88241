import { test } from 'node:test';
import assert from 'node:assert/strict';
import { averageRates, environmentJson, parseEnvironment, priceAt, type Price } from '../../src/placement/env.js';
import { changeLine, diffEnvironments, setPath, splitAssignment } from '../../src/placement/envEdit.js';
import { planMoves, type VmInfo } from '../../src/placement/index.js';
import { envVersions } from '../../src/replay/record.js';
import { UserError } from '../../src/util/errors.js';

/** The environment's time (price schedules, end times) and its edits: pure functions, no Redis. */

const GiB = 1048576;
const T0 = Date.parse('2026-06-01T12:00:00Z');
const H = 3_600_000;

function file(siteB: object = {}, extra: Record<string, unknown> = {}) {
  return {
    sites: { a: { price: { perVmHour: 0.1 } }, b: { price: { perVmHour: 0.2, ...siteB } } },
    hosts: { a1: { site: 'a', vcpus: 8, memoryGiB: 16 }, b1: { site: 'b', vcpus: 8, memoryGiB: 16 } },
    links: [{ sites: ['a', 'b'], latencyMs: 20, bandwidthMbit: 1000, transferPricePerGB: 0.001 }],
    ...extra,
  };
}

const rejects = (raw: unknown, re: RegExp, now?: number) =>
  assert.throws(
    () => parseEnvironment(raw, 'env.json', now === undefined ? {} : { now }),
    (e: unknown) => e instanceof UserError && re.test(e.message),
    String(re),
  );

const priceOfB = (raw: object): Price => parseEnvironment(raw).sites.find((s) => s.name === 'b')!.price;

test('a bad schedule is refused with the entry named and what to do', () => {
  const from = (iso: string, rest: object = {}) => ({ from: iso, perVmHour: 0.05, ...rest });
  rejects(
    file({ schedule: [from('2026-07-01T00:00Z'), from('2026-06-20T00:00Z')] }),
    /env.json: sites.b.price.schedule\[1\] \(from 2026-06-20T00:00:00.000Z\) is listed after schedule\[0\] \(from 2026-07-01T00:00:00.000Z\): list the entries oldest first/,
  );
  rejects(file({ schedule: [from('2026-07-01T00:00Z'), from('2026-07-01T00:00Z')] }), /sites.b.price.schedule\[1\] \(from 2026-07-01T00:00:00.000Z\) is listed after schedule\[0\]/);
  rejects(
    file({ schedule: [from('2026-07-01T00:00Z', { until: '2026-08-01T00:00Z' }), from('2026-07-15T00:00Z')] }),
    /sites.b.price.schedule\[0\] \(until 2026-08-01T00:00:00.000Z\) overlaps schedule\[1\] \(from 2026-07-15T00:00:00.000Z\)/,
  );
  rejects(file({ schedule: [from('2026-07-01T00:00Z', { until: '2026-06-01T00:00Z' })] }), /schedule\[0\] ends .* before it starts/);
  rejects(file({ schedule: [{ from: '2026-07-01T00:00Z', perVmHour: -0.01 }] }), /sites.b.price.schedule\[0\].perVmHour is -0.01: it cannot be negative/);
  rejects(file({ schedule: [{ perVmHour: 0.01 }] }), /schedule\[0\] has no "from"/);
  rejects(file({ schedule: [{ from: 'tomorrow', perVmHour: 0.01 }] }), /schedule\[0\].from must be an ISO date/);
  rejects(file({ schedule: [{ from: '2026-07-01T00:00Z' }] }), /schedule\[0\] changes nothing/);
  rejects(file({ schedule: [{ from: '2026-07-01T00:00Z', price: 1 }] }), /schedule\[0\] has unknown key "price"/);
  rejects(
    file({
      daily: [
        { hours: '22:00-06:00', perVmHour: 0.01 },
        { hours: '23:00-23:30', perVmHour: 0.01 },
      ],
    }),
    /sites.b.price.daily\[1\] \(23:00-23:30\) overlaps daily\[0\] \(22:00-06:00\)/,
  );
  rejects(
    file({
      daily: [
        { hours: '12:00-13:00', perVmHour: 0.01 },
        { hours: '01:00-02:00', perVmHour: 0.01 },
      ],
    }),
    /daily\[1\] \(01:00-02:00\) is listed after daily\[0\] \(12:00-13:00\): list the hours in the order/,
  );
  rejects(file({ daily: [{ hours: '05:00-29:00', perVmHour: 0.01 }] }), /daily\[0\].hours must be "HH:MM-HH:MM" in UTC/);
  rejects(file({ daily: [{ hours: '06:00-06:00', perVmHour: 0.01 }] }), /empty or the whole day/);
  rejects(file({ daily: [{ hours: '06:00-07:00' }] }), /daily\[0\] gives no rate/);
  // A host in a site not defined, as before.
  rejects(file({}, { hosts: { c1: { site: 'c' } } }), /hosts.c1.site is 'c', which is not in "sites"/);
});

test('end times in the past are refused when written (now given), not when a stored version is read back later', () => {
  const past = file({ schedule: [{ from: '2026-05-01T00:00Z', until: '2026-05-15T00:00Z', perVmHour: 0.05 }] });
  rejects(past, /sites.b.price.schedule\[0\].until \(2026-05-15T00:00:00.000Z\) is in the past: remove the entry/, T0);
  assert.doesNotThrow(() => parseEnvironment(past));
  const quota = file({}, { hosts: { a1: { site: 'a' }, b1: { site: 'b', availableUntil: '2026-06-01T11:00:00Z' } } });
  rejects(quota, /hosts.b1.availableUntil \(2026-06-01T11:00:00.000Z\) is in the past/, T0);
  assert.doesNotThrow(() => parseEnvironment(quota, 'stored'));
  // An entry that began in the past and has no end is history, not an error.
  assert.doesNotThrow(() => parseEnvironment(file({ schedule: [{ from: '2026-01-01T00:00Z', perVmHour: 0.05 }] }), 'x', { now: T0 }));
});

test('the price at an instant: base, dated entry, its end, time-of-day rates (UTC, across midnight), a dated entry with its own hours', () => {
  const p = priceOfB(
    file({
      perGiBHour: 0.001,
      daily: [{ hours: '22:00-06:00', perVmHour: 0.05 }],
      schedule: [
        { from: '2026-07-01T00:00:00Z', until: '2026-08-01T00:00:00Z', perVmHour: 0.15 },
        { from: '2026-09-01T00:00:00Z', perVmHour: 0.12, daily: [{ hours: '00:00-08:00', perGiBHour: 0 }] },
      ],
    }),
  );
  const at = (iso: string) => priceAt(p, Date.parse(iso));
  assert.deepEqual(at('2026-06-01T12:00:00Z'), { perVmHour: 0.2, perVcpuHour: 0, perGiBHour: 0.001 });
  assert.deepEqual(at('2026-06-01T23:00:00Z'), { perVmHour: 0.05, perVcpuHour: 0, perGiBHour: 0.001 }, 'night rate');
  assert.deepEqual(at('2026-06-02T05:59:00Z'), { perVmHour: 0.05, perVcpuHour: 0, perGiBHour: 0.001 }, 'still night after midnight');
  assert.deepEqual(at('2026-06-02T06:00:00Z'), { perVmHour: 0.2, perVcpuHour: 0, perGiBHour: 0.001 }, 'the end is exclusive');
  assert.deepEqual(at('2026-07-10T12:00:00Z'), { perVmHour: 0.15, perVcpuHour: 0, perGiBHour: 0.001 }, 'dated entry, its other keys from the base');
  assert.deepEqual(at('2026-07-10T23:00:00Z'), { perVmHour: 0.05, perVcpuHour: 0, perGiBHour: 0.001 }, "the base's night rate holds inside a dated entry without hours");
  assert.deepEqual(at('2026-08-10T12:00:00Z'), { perVmHour: 0.2, perVcpuHour: 0, perGiBHour: 0.001 }, 'after its until: the base again');
  assert.deepEqual(at('2026-12-10T03:00:00Z'), { perVmHour: 0.12, perVcpuHour: 0, perGiBHour: 0 }, 'the last entry holds for ever, with its own hours');
  assert.deepEqual(at('2026-12-10T23:00:00Z'), { perVmHour: 0.12, perVcpuHour: 0, perGiBHour: 0.001 });
});

test('the average price over a horizon is exact, piece by piece', () => {
  const close = (x: number, y: number) => assert.ok(Math.abs(x - y) < 1e-12, `${x} vs ${y}`);
  // A drop 10 minutes from now: 10 min at 0.2, 50 min at 0.02.
  const drop = priceOfB(file({ schedule: [{ from: new Date(T0 + 10 * 60_000).toISOString(), perVmHour: 0.02 }] }));
  close(averageRates(drop, T0, T0 + H).perVmHour, (10 * 0.2 + 50 * 0.02) / 60);
  close(averageRates(drop, T0 + H, T0 + 2 * H).perVmHour, 0.02);
  close(averageRates(drop, T0 - H, T0).perVmHour, 0.2);
  // Nights (22:00-06:00) at 0.05 over a whole day: 8 h of 24.
  const nights = priceOfB(file({ daily: [{ hours: '22:00-06:00', perVmHour: 0.05 }] }));
  close(averageRates(nights, T0, T0 + 24 * H).perVmHour, (8 * 0.05 + 16 * 0.2) / 24);
  close(averageRates(nights, Date.parse('2026-06-01T21:00:00Z'), Date.parse('2026-06-01T23:00:00Z')).perVmHour, (0.2 + 0.05) / 2);
  // No schedule: the price itself; an empty span: the price at its start.
  assert.deepEqual(averageRates(priceOfB(file()), T0, T0 + H), { perVmHour: 0.2, perVcpuHour: 0, perGiBHour: 0 });
  assert.deepEqual(averageRates(drop, T0 + H, T0 + H), { perVmHour: 0.02, perVcpuHour: 0, perGiBHour: 0 });
});

test("hosts take their site's price with its schedule, unless they give a price of their own; the file format round-trips", () => {
  const raw = file(
    { daily: [{ hours: '22:00-06:00', perVmHour: 0.05 }], schedule: [{ from: '2026-07-01T00:00:00Z', perVmHour: 0.15 }] },
    { hosts: { b1: { site: 'b' }, b2: { site: 'b', price: { perGiBHour: 0.01 } } } },
  );
  const env = parseEnvironment(raw);
  const b1 = env.hosts.find((h) => h.name === 'b1')!;
  const b2 = env.hosts.find((h) => h.name === 'b2')!;
  assert.equal(b1.price.schedule?.length, 1);
  assert.equal(b2.price.schedule, undefined, "a host's own price has its own schedule (none)");
  assert.deepEqual(priceAt(b2.price, Date.parse('2026-07-10T23:00:00Z')), { perVmHour: 0.2, perVcpuHour: 0, perGiBHour: 0.01 });
  assert.deepEqual(parseEnvironment(environmentJson(env)), env);
});

test('cost objective: a price drop due within the horizon draws a VM; one due after it does not', () => {
  const vms: VmInfo[] = [{ name: 'vm1', host: 'a1', site: 'a', memoryKiB: 2 * GiB, vcpus: 1 }];
  const plan = (from: number) =>
    planMoves([], vms, parseEnvironment(file({ schedule: [{ from: new Date(from).toISOString(), perVmHour: 0.01 }] })), { objective: 'cost', now: T0, horizonSeconds: 3600 });
  // Today b costs 0.2 against a's 0.1; from 10 minutes on, 0.01: over the hour, (10 × 0.2 + 50 × 0.01) / 60 ≈ 0.042.
  const soon = plan(T0 + 10 * 60_000);
  assert.equal(soon.moves[0]?.to, 'b1', soon.noMove);
  const late = plan(T0 + 2 * H);
  assert.equal(late.moves.length, 0, 'the drop comes after the horizon: today b costs more');
});

test('env set: one value by a dotted path of the file format', () => {
  const doc = {
    sites: { a: {}, b: { price: { perVmHour: 0.05 } }, 'eu.west': {} },
    hosts: { 'a1.example': { site: 'a' }, a1: { site: 'a' } },
    links: [{ sites: ['a', 'b'], latencyMs: 20, bandwidthMbit: 1000 }],
    endpoints: { '10.0.9.5': 'a' },
  };
  type D = typeof doc & Record<string, never>;
  const set = (path: string, value: Parameters<typeof setPath>[2]) => {
    const r = setPath(doc, path, value);
    return { ...r, doc: r.doc as unknown as D };
  };
  const r = set('site.b.price.perVmHour', 0.02);
  assert.equal(r.path, 'sites.b.price.perVmHour');
  assert.deepEqual([r.before, r.after], [0.05, 0.02]);
  assert.equal(doc.sites.b.price.perVmHour, 0.05, 'the document given is left as it was');
  assert.deepEqual(set('sites.a.price.perGiBHour', 0.1).doc.sites.a, { price: { perGiBHour: 0.1 } }, 'objects on the way are made');
  assert.equal(set('links.b-a.latencyMs', 30).path, 'links.a-b.latencyMs', 'a link by its sites, either order');
  assert.equal((set('links[0].bandwidthMbit', 10).doc.links[0] as { bandwidthMbit: number }).bandwidthMbit, 10);
  assert.equal(set('hosts.a1.example.availableUntil', '2027-01-01T00:00:00Z').path, 'hosts.a1.example.availableUntil', 'a host name with dots');
  assert.equal(set('endpoints.10.0.9.6', 'b').path, 'endpoints.10.0.9.6');
  assert.equal(set('sites.eu.west.lanMbit', 100).path, 'sites.eu.west.lanMbit');
  assert.deepEqual(set('hosts.c1', { site: 'b' }).doc.hosts, { ...doc.hosts, c1: { site: 'b' } }, 'a new host, whole');
  assert.equal(set('sites.b.price', null).doc.sites.b.price, undefined, 'null removes');
  const sched = set('sites.b.price.schedule', [{ from: '2026-12-01T00:00Z', perVmHour: 0.03 }]).doc;
  assert.equal(setPath(sched, 'sites.b.price.schedule[0].perVmHour', 0.04).after, 0.04);
  assert.deepEqual(set('links.a-c', { latencyMs: 5, bandwidthMbit: 100 }).doc.links.at(-1), { sites: ['a', 'c'], latencyMs: 5, bandwidthMbit: 100 });
  assert.equal(set('cpuOvercommit', 4).path, 'cpuOvercommit');
  const bad = (path: string, re: RegExp) =>
    assert.throws(
      () => set(path, 1),
      (e: unknown) => e instanceof UserError && re.test(e.message),
      path,
    );
  bad('sites.zz.price.perVmHour', /unknown site 'zz' \(the environment has a, b, eu.west\); add it whole first/);
  bad('hosts.zz.speed', /unknown host 'zz'/);
  bad('links.a-z.latencyMs', /no link a-z in the environment/);
  bad('sites.b.price.schedule[3]', /\[3\]/);
  bad('sites', /name one of the sites/);
  assert.deepEqual(splitAssignment('site.b.price.perVmHour=0.02'), { path: 'site.b.price.perVmHour', value: 0.02 });
  assert.deepEqual(splitAssignment('hosts.b1.availableUntil=2027-01-01T00:00:00Z'), { path: 'hosts.b1.availableUntil', value: '2027-01-01T00:00:00Z' });
  assert.deepEqual(splitAssignment('hosts.b1.price={"perVmHour":1}').value, { perVmHour: 1 });
  assert.throws(() => splitAssignment('sites.b'), /is not PATH=VALUE/);
});

test('what changed between two versions, leaf by leaf; links named by their sites', () => {
  const before = file({ daily: [{ hours: '22:00-06:00', perVmHour: 0.05 }] });
  const after = structuredClone(before) as ReturnType<typeof file> & { endpoints?: object };
  after.sites.b.price.perVmHour = 0.02;
  (after.links[0] as { latencyMs: number }).latencyMs = 30;
  delete (after.sites.b.price as { daily?: unknown }).daily;
  after.endpoints = { '10.0.9.5': 'a' };
  assert.deepEqual(diffEnvironments(before, after).map(changeLine), [
    'sites.b.price.perVmHour: 0.2 -> 0.02',
    'links.a-b.latencyMs: 20 -> 30',
    'endpoints.10.0.9.5: (none) -> "a"',
    'sites.b.price.daily[0].hours: "22:00-06:00" -> (none)',
    'sites.b.price.daily[0].perVmHour: 0.05 -> (none)',
  ]);
  assert.deepEqual(diffEnvironments(before, before), []);
  assert.equal(diffEnvironments(undefined, { sites: { a: {} } })[0]?.path, 'sites.a', 'an empty object is a leaf');
});

test('record: the stored versions over a trace, each from the instant it was written, as the live manager saw them', () => {
  const defaults = { latencyMs: 20, bandwidthMbit: 1000 };
  const v = (version: number, at: number) => ({ version, at, source: `env set x=${version}`, by: 'op@h', file: { sites: { a: {} } } });
  const stored = [v(1, 1000), v(2, 5000), v(3, 9000), v(4, 20_000)];
  const out = envVersions(stored, 6000, 15_000, { defaults });
  assert.deepEqual(
    out.map((e) => [e.at, e.version, e.source]),
    [
      [6000, 2, 'Redis version 2: env set x=2 by op@h'],
      [9000, 3, 'Redis version 3: env set x=3 by op@h'],
    ],
  );
  // Before the first version: what stood in (the registry's, or a lab's), then the stored ones.
  assert.deepEqual(
    envVersions(stored, 0, 6000, { defaults }).map((e) => [e.at, e.file === null ? 'registry' : e.version]),
    [
      [0, 'registry'],
      [1000, 1],
      [5000, 2],
    ],
  );
  assert.deepEqual(envVersions([], 0, 6000, { defaults }), [{ at: 0, file: null, defaults, source: 'registry' }]);
});
