import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'puppeteer-core';
import { spanStarts } from '../../src/collector/span.js';
import { labDown, labUp } from '../../src/lab/lab.js';
import type { LabState } from '../../src/lab/state.js';
import { domainName, hosts } from '../../src/lab/topology.js';
import { listDomains } from '../../src/libvirt/virsh.js';
import { run, sleep } from '../../src/util/exec.js';
import { msToNextBoundary } from '../../src/util/period.js';
import { launchChromium, openFile, overflow } from '../helpers/browser.js';
import { labSensors, startViewGuests, VIEW_GUESTS } from '../helpers/lab.js';
import { uniqueName } from '../helpers/names.js';

// One answer everywhere: over the same span, stats, groups, plan, report and a
// manager round name the same running VMs on the same hosts, the same groups
// and the same inter-site share; and the HTML report, in a real browser, shows
// those groups and one matrix cell per VM pair, within 1,400 px, without errors.
// 2 sites x 2 hosts; vm1 a1 + vm2 b1 (split, 256 B), vm3 b1 + vm4 b2 (site b, 1024 B).
const PERIOD = 10;
const SPAN = 2;
const RATE = 20;
const SETTLE_MS = 1500;
const WIDTH = 1400;
/** Absolute difference allowed between two commands' inter-site shares (mean and weighted over steady traffic, counts at period edges). */
const SHARE_TOLERANCE = 0.03;
const CLI = new URL('../../src/cli/main.js', import.meta.url).pathname;
const name = uniqueName();
/** Where this run leaves what a person reads after it (the screenshot, the commands' answers): outside the repository. */
const ARTIFACTS = process.env.VIRT_COHORT_TEST_ARTIFACTS ?? tmpdir();
const STAMP = new Date().toISOString().replace(/[:.]/g, '-');
const artifact = (ext: string) => join(ARTIFACTS, `virt-cohort-views-${name}-${STAMP}.${ext}`);

// biome-ignore lint/suspicious/noExplicitAny: the commands' JSON, read field by field below
type Json = Record<string, any>;
interface Answers {
  /** When the commands were started, and the periods each one read (start of the oldest, s). */
  startedAt: number;
  periods: Record<string, number | undefined>;
  stats: Json;
  directory: Json[];
  groups: Json;
  plan: Json;
  report: Json;
  manager: Json;
  /** Ground truth from every host's libvirt, read right after: running VM -> host. */
  libvirt: Map<string, string>;
}

describe(`one answer everywhere, on lab ${name}`, { concurrency: 1 }, () => {
  let lab: LabState;
  let dir: string;
  let html: string;
  let a: Answers;
  const dom = (vm: string) => domainName(lab, vm);
  const siteOf = (host: string) => hosts(lab).find((h) => h.name === host)?.site;

  async function cli(args: string[]): Promise<Json> {
    try {
      return JSON.parse(await run(process.execPath, [CLI, ...args], { timeoutMs: 60_000 }));
    } catch (err) {
      const e = err as { code?: unknown; stdout?: string; stderr?: string; message: string };
      throw new Error(`virt-cohort ${args.join(' ')}: exit ${e.code ?? '?'}: ${e.stderr || e.message}\n${e.stdout ?? ''}`);
    }
  }

  /** Every command at once, right after a period boundary (+ settle), so that each reads the same SPAN periods. */
  async function readAll(): Promise<Answers> {
    await sleep(msToNextBoundary(Date.now(), PERIOD) + SETTLE_MS);
    const startedAt = Date.now();
    const span = ['--span', String(SPAN)];
    const wait = ['--wait', '5s'];
    const redis = ['--lab', name];
    const [stats, directory, groups, plan, report, manager] = await Promise.all([
      cli(['stats', ...redis, ...span, ...wait, '--json']),
      cli(['stats', ...redis, '--vms', '--json']),
      cli(['groups', '--lab', name, ...span, ...wait, '--json']),
      cli(['plan', '--lab', name, ...span, ...wait, '--json']),
      cli(['report', '--lab', name, ...span, ...wait, '--json', '--html', html]),
      cli(['manager', '--lab', name, '--no-config', ...span, '--once', '--json']),
    ]);
    const libvirt = new Map<string, string>();
    for (const h of hosts(lab)) for (const d of await listDomains(h.uri)) if (d.state === 'running') libvirt.set(d.name, h.name);
    const periods = {
      stats: stats.periods?.[0],
      groups: groups.answer?.periods?.[0],
      plan: plan.answer?.periods?.[0],
      report: report.span ? Date.parse(report.span.from) / 1000 : undefined,
      // The manager's JSON names no periods: those of its round's time.
      manager: manager.at ? spanStarts(SPAN, PERIOD, Date.parse(manager.at))[0] : undefined,
    };
    return { startedAt, periods, stats, directory: directory as unknown as Json[], groups, plan, report, manager, libvirt };
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vc-views-'));
    html = join(dir, 'report.html');
    lab = await labUp({ name, sites: 2, hostsPerSite: 2, delayMs: 10, rateMbit: 1000, periodSeconds: PERIOD, sensor: labSensors()[0]! });
    await startViewGuests(name, RATE);
    // SPAN full periods of traffic from every guest before anything is read.
    await sleep(msToNextBoundary(Date.now(), PERIOD) + SPAN * PERIOD * 1000);
    // The commands start one after the other on a busy machine: a read whose
    // commands straddled a boundary is read again (that is timing, not an answer).
    for (let i = 0; ; i++) {
      a = await readAll();
      const seen = new Set(Object.values(a.periods));
      if (seen.size === 1 && !seen.has(undefined)) break;
      if (i === 2) throw new Error(`three reads in a row, the commands did not all read the same periods: ${JSON.stringify(a.periods)}`);
    }
    await mkdir(ARTIFACTS, { recursive: true });
    await writeFile(artifact('json'), JSON.stringify({ ...a, libvirt: Object.fromEntries(a.libvirt) }, null, 2));
  });
  after(async () => {
    await labDown(name);
    await rm(dir, { recursive: true, force: true });
  });

  it('stats, groups, plan, report and a manager round agree on the running VMs, their hosts, the groups and the inter-site share', (t) => {
    const disagree: string[] = [];
    const show = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));
    /** Each view of `what` against the first (the reference): one line per view that differs. */
    const same = (what: string, views: [string, unknown][]) => {
      const [refName, ref] = views[0]!;
      for (const [n, v] of views.slice(1)) if (show(v) !== show(ref)) disagree.push(`${what}: ${n} says ${show(v)}, ${refName} says ${show(ref)}`);
    };
    const sorted = (xs: Iterable<string>) => [...new Set(xs)].sort();
    const partition = (gs: string[][]) => gs.map((g) => `{${sorted(g).join(' ')}}`).sort();
    const placement = (pairs: Iterable<[string, string]>) => Object.fromEntries([...pairs].sort(([x], [y]) => (x < y ? -1 : 1)));

    // The running VMs.
    const running = a.directory.filter((v) => v.state === 'running');
    const expected = sorted(VIEW_GUESTS.map((g) => dom(g.vm)));
    // A pair's end is a VM when the directory names it; the others are peers that are not VMs (ARP, IPv6 multicast, ...).
    const known = new Set(a.directory.map((v) => v.name as string));
    const vmEnds = (a.stats.pairs as Json[]).flatMap((p) => [p.src, p.dst]).filter((e) => known.has(e));
    same('running VMs', [
      ['libvirt', sorted(a.libvirt.keys())],
      ['the lab', expected],
      ['stats --vms', sorted(running.map((v) => v.name))],
      ['stats (VMs in its pairs)', sorted(vmEnds)],
      ['groups (members)', sorted((a.groups.groups as Json[]).flatMap((g) => g.members))],
      ['report', sorted((a.report.vms as Json[]).map((v) => v.name))],
      ['report (hosts)', sorted((a.report.hosts as Json[]).flatMap((h) => h.vms))],
      // The manager's JSON lists no VMs: those of its groups (here every VM is in one).
      ['manager (members of its groups)', sorted((a.manager.groups as string[][]).flat())],
    ]);
    same('number of running VMs', [
      ['libvirt', a.libvirt.size],
      ['plan', a.plan.vms],
    ]);
    same('number of live hosts', [
      ['the lab', hosts(lab).length],
      ['plan', a.plan.hosts],
      ['report', (a.report.hosts as Json[]).filter((h) => h.live).length],
    ]);

    // Their hosts (and sites).
    const truth = placement(a.libvirt);
    same('VM -> host', [
      ['libvirt', truth],
      ['the lab', placement(VIEW_GUESTS.map((g) => [dom(g.vm), g.host]))],
      ['stats --vms', placement(running.map((v) => [v.name, v.host]))],
      ['report', placement((a.report.vms as Json[]).map((v) => [v.name, v.host]))],
      ['report (hosts)', placement((a.report.hosts as Json[]).flatMap((h) => (h.vms as string[]).map((v) => [v, h.name] as [string, string])))],
    ]);
    same('VM -> site', [
      ['libvirt', placement([...a.libvirt].map(([v, h]) => [v, siteOf(h) ?? '?']))],
      ['stats --vms', placement(running.map((v) => [v.name, v.site]))],
      ['report', placement((a.report.vms as Json[]).map((v) => [v.name, v.site]))],
    ]);
    // plan and the manager tell a VM's host only in their moves: each from where libvirt runs it.
    for (const [who, moves] of [
      ['plan', a.plan.moves],
      ['manager', a.manager.moves],
    ] as [string, Json[]][]) {
      for (const m of moves) {
        if (m.from !== a.libvirt.get(m.vm)) disagree.push(`host of ${m.vm}: ${who} moves it from ${m.from}, libvirt runs it on ${a.libvirt.get(m.vm)}`);
        if (m.fromSite !== undefined && m.fromSite !== siteOf(m.from)) disagree.push(`site of ${m.from}: ${who} says ${m.fromSite}, the lab ${siteOf(m.from)}`);
      }
    }
    for (const g of a.groups.groups as Json[]) {
      const sites = sorted((g.members as string[]).map((m) => siteOf(a.libvirt.get(m) ?? '') ?? '?'));
      same(`sites of group {${g.members.join(' ')}}`, [
        ['libvirt', sites],
        ['groups', g.sites],
      ]);
    }
    for (const g of a.report.groups as Json[]) {
      same(`hosts of report group {${g.members.join(' ')}}`, [
        ['libvirt', sorted((g.members as string[]).map((m) => a.libvirt.get(m) ?? '?'))],
        ['report', g.hosts],
      ]);
    }

    // The groups, as sets of member names (groups of 2 or more that count: significant).
    same('groups', [
      [
        'the lab',
        partition([
          [dom('vm1'), dom('vm2')],
          [dom('vm3'), dom('vm4')],
        ]),
      ],
      ['groups', partition((a.groups.groups as Json[]).filter((g) => g.significant).map((g) => g.members))],
      ['report', partition((a.report.groups as Json[]).filter((g) => g.members.length > 1).map((g) => g.members))],
      ['manager', partition(a.manager.groups)],
    ]);

    // The inter-site share of VM-to-VM bytes (both ends running VMs).
    const site = new Map(running.map((v) => [v.name, v.site]));
    let all = 0;
    let cross = 0;
    for (const p of a.stats.pairs as Json[]) {
      if (!site.has(p.src) || !site.has(p.dst)) continue;
      all += p.bytes;
      if (site.get(p.src) !== site.get(p.dst)) cross += p.bytes;
    }
    const bytesPerSecond = all / a.stats.periodSeconds;
    const shares: [string, number][] = [
      ['stats (mean pairs, bytes)', all ? cross / all : 0],
      ['report (interSite.share)', a.report.interSite.share],
      ['report (interSite.bytes / totalBytes)', a.report.interSite.totalBytes ? a.report.interSite.bytes / a.report.interSite.totalBytes : 0],
      ['manager (interSite)', a.manager.interSite],
      // plan gives the inter-site bytes/s it starts from, not a share: over stats' VM-to-VM bytes/s.
      ['plan (before.interSiteBytes / stats bytes/s)', bytesPerSecond ? a.plan.before.interSiteBytes / bytesPerSecond : 0],
    ];
    for (const [n, s] of shares.slice(1)) {
      if (!(Math.abs(s - shares[0]![1]) <= SHARE_TOLERANCE))
        disagree.push(`inter-site share: ${n} says ${s.toFixed(4)}, ${shares[0]![0]} says ${shares[0]![1].toFixed(4)} (tolerance ${SHARE_TOLERANCE})`);
    }
    t.diagnostic(`every answer: ${artifact('json')}`);
    t.diagnostic(`periods read: ${JSON.stringify(a.periods)}; inter-site shares: ${shares.map(([n, s]) => `${n} ${s.toFixed(4)}`).join(', ')}`);
    t.diagnostic(
      `plan moves: ${JSON.stringify(a.plan.moves.map((m: Json) => `${m.vm} ${m.from}->${m.to}`))}; manager moves: ${JSON.stringify(a.manager.moves.map((m: Json) => `${m.vm} ${m.from}->${m.to}`))}`,
    );
    assert.ok(shares[0]![1] > 0.05 && shares[0]![1] < 0.5, `the layout sends some but not most bytes across sites (stats: ${shares[0]![1]})`);
    assert.deepEqual(disagree, [], `the commands disagree:\n${disagree.join('\n')}`);
  });

  it('the HTML report in headless Chromium: the groups of `groups`, one matrix cell per VM pair, nothing wider than 1,400 px, no errors', async (t) => {
    let browser: Browser | undefined;
    try {
      browser = await launchChromium();
      const { page, errors } = await openFile(browser, html, WIDTH);
      // The screenshot first: it is what a person looks at when an assertion below fails.
      const shot = artifact('png');
      await page.screenshot({ path: shot as `${string}.png`, fullPage: true });
      t.diagnostic(`screenshot: ${shot}`);

      const shown = await page.evaluate(() => ({
        groups: Array.from(document.querySelectorAll('#groups tr[data-group]')).map((tr) => Array.from(tr.querySelectorAll('[data-vm]')).map((e) => (e as HTMLElement).dataset.vm!)),
        cells: Array.from(document.querySelectorAll('#matrix [data-src]')).map((e) => `${(e as HTMLElement).dataset.src} > ${(e as HTMLElement).dataset.dst}`),
      }));
      // `groups`' answer as the report shows it: the groups that count, every other VM alone.
      const grouped = (a.groups.groups as Json[]).filter((g) => g.significant).map((g) => g.members as string[]);
      const alone = (a.groups.groups as Json[]).filter((g) => !g.significant).flatMap((g) => (g.members as string[]).map((m) => [m]));
      const partition = (gs: string[][]) => gs.map((g) => [...g].sort().join(' ')).sort();
      assert.equal(
        shown.groups.length,
        grouped.length + alone.length,
        `groups in the page: ${JSON.stringify(shown.groups)}; groups --json: ${JSON.stringify(grouped)} and alone ${JSON.stringify(alone)}`,
      );
      assert.deepEqual(partition(shown.groups), partition([...grouped, ...alone]), 'the members of each group, as groups --json');

      const pairs = (a.stats.pairs as Json[]).filter((p) => a.libvirt.has(p.src) && a.libvirt.has(p.dst) && p.bytes > 0).map((p) => `${p.src} > ${p.dst}`);
      assert.equal(new Set(shown.cells).size, shown.cells.length, `a VM pair drawn twice: ${shown.cells.join(', ')}`);
      assert.deepEqual([...shown.cells].sort(), pairs.sort(), 'one matrix cell per VM pair with traffic (stats --json)');
      assert.equal(shown.cells.length, VIEW_GUESTS.length, 'each guest sends to its group mate: 4 ordered pairs');

      const o = await overflow(page, WIDTH);
      assert.ok(o.scrollWidth <= WIDTH, `the page scrolls sideways: scrollWidth ${o.scrollWidth} px`);
      assert.deepEqual(o.beyond, [], `elements beyond ${WIDTH} px`);
      assert.deepEqual(errors, [], 'no console error, page error or failed request');
    } finally {
      await browser?.close();
    }
  });
});
