// The chaos run: a lab under traffic while random faults hit every part, then
// the books are checked. Not in CI (it lasts at least 30 minutes). Run as root
// after setup, with nothing else heavy on the machine:
//   node dist/test/bench/chaos.js [minutes] [--write-docs]
// (--write-docs: docs/measurements.md block `chaos`, README block `chaos-summary`).
//
// Lab: 2 sites x 2 hosts, 5 s periods, eBPF; 4 guests in 2 groups, each
// sending 20 datagrams/s to its group; two managers with --apply. Faults, one
// at a time every 20-60 s: agent SIGKILL, libvirtd restart and SIGSTOP, Redis
// restart and SIGSTOP, a wall-clock step on one host's agent (libfaketime),
// manager SIGKILL (while a migration runs when one does), and a VM moved by
// hand (so the managers keep migrating). At the end, per VM pair, the counts
// of every period are summed and must lie between what the receiving guest's
// generator got and what the sending guest's wrote in the same time (nothing
// lost, nothing doubled); and the marks of running migrations,
// sampled every 250 ms, never come from two managers at once.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startGuests } from '../../src/cli/lab.js';
import { K } from '../../src/collector/keys.js';
import { agentPaths, labRedisUrl, startAgent } from '../../src/lab/agents.js';
import { guestReports } from '../../src/lab/console.js';
import { labDown, labUp } from '../../src/lab/lab.js';
import { libvirtdPidFile, restartLibvirtd } from '../../src/lab/libvirtd.js';
import { redisPidFile, startRedis } from '../../src/lab/redis.js';
import { labDir, type LabState } from '../../src/lab/state.js';
import { domainName, hosts, type LabHost } from '../../src/lab/topology.js';
import { migrateVm, listVms } from '../../src/lab/vm.js';
import { query } from '../../src/collector/query.js';
import { readHistory, readRunning } from '../../src/manager/history.js';
import { packageRoot } from '../../src/paths.js';
import { run, sleep, waitFor } from '../../src/util/exec.js';
import { alive, livePid } from '../../src/util/process.js';
import { uniqueName } from '../helpers/names.js';
import { benchArgs, maybeWriteBlock } from './doc.js';

const { writeDocs, args } = benchArgs();
const MINUTES = Number(args[0] ?? 30);
const PERIOD = 5;
const RATE = 20;
const GUESTS = 4;
const CLI = join(packageRoot, 'dist', 'src', 'cli', 'main.js');
const FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';
const name = uniqueName('c');
const rand = (lo: number, hi: number) => lo + Math.random() * (hi - lo);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
const log = (s: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

let lab: LabState;
let redis!: Redis;
const managers: (ChildProcess | undefined)[] = [undefined, undefined];
const faults = new Map<string, number>();
let twoAtOnce = 0;
/** Managers killed while a migration of theirs was marked running. */
let migrationKills = 0;

function startManager(i: number): void {
  const out = join(labDir(name), `manager${i}.log`);
  void open(out, 'a').then((f) => {
    const child = spawn(process.execPath, [CLI, 'manager', '--lab', name, '--apply', '--no-config', '--every', '1', '--span', '2', '--confirm', '1', '--cooldown', '20s'], {
      stdio: ['ignore', f.fd, f.fd],
    });
    void f.close();
    managers[i] = child;
  });
}

/** The clock-step host's agent runs under libfaketime, its wall clock offset by the seconds in this file. */
const clockFile = () => join(labDir(name), 'clock-offset');
let clockOffset = 0;

async function restartAgent(h: LabHost, stepped: LabHost): Promise<void> {
  const env = h === stepped && existsSync(FAKETIME) ? { LD_PRELOAD: FAKETIME, FAKETIME_TIMESTAMP_FILE: clockFile(), FAKETIME_NO_CACHE: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1' } : {};
  await startAgent(lab, h, [], env);
}

async function signal(pidFile: string, sig: NodeJS.Signals): Promise<number> {
  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  if (pid > 0 && alive(pid)) process.kill(pid, sig);
  return pid;
}

/** One fault, chosen at random, and its repair. */
async function fault(stepped: LabHost): Promise<void> {
  const h = pick(hosts(lab));
  const kinds = ['agent-kill', 'libvirtd-restart', 'libvirtd-stop', 'redis-restart', 'redis-stop', 'manager-kill', 'move-by-hand', ...(existsSync(FAKETIME) ? ['clock-step'] : [])];
  const kind = pick(kinds);
  faults.set(kind, (faults.get(kind) ?? 0) + 1);
  switch (kind) {
    case 'agent-kill': {
      const pid = (await livePid(agentPaths(lab, h).pid))!;
      log(`fault: SIGKILL the agent of ${h.name}`);
      process.kill(pid, 'SIGKILL');
      await sleep(rand(1000, 8000));
      await restartAgent(h, stepped);
      return;
    }
    case 'libvirtd-restart': {
      log(`fault: restart libvirtd of ${h.name}`);
      const pid = await signal(libvirtdPidFile(lab, h), 'SIGTERM');
      await waitFor('libvirtd to stop', async () => (alive(pid) ? undefined : true), 30_000, 200);
      await restartLibvirtd(lab, h);
      return;
    }
    case 'libvirtd-stop': {
      const ms = rand(5000, 45_000);
      log(`fault: SIGSTOP libvirtd of ${h.name} for ${(ms / 1000).toFixed(0)} s`);
      await signal(libvirtdPidFile(lab, h), 'SIGSTOP');
      await sleep(ms);
      await signal(libvirtdPidFile(lab, h), 'SIGCONT');
      return;
    }
    case 'redis-restart': {
      log('fault: restart Redis');
      const pid = await signal(redisPidFile(name), 'SIGCONT');
      await run('redis-cli', ['-p', String(lab.redisPort), 'shutdown', 'save']).catch(() => undefined);
      await waitFor('Redis to stop', async () => (alive(pid) ? undefined : true), 10_000, 100);
      await sleep(rand(2000, 20_000));
      await startRedis(lab);
      return;
    }
    case 'redis-stop': {
      const ms = rand(2000, 15_000);
      log(`fault: SIGSTOP Redis for ${(ms / 1000).toFixed(0)} s`);
      await signal(redisPidFile(name), 'SIGSTOP');
      await sleep(ms);
      await signal(redisPidFile(name), 'SIGCONT');
      return;
    }
    case 'clock-step': {
      // Within a minute either way of the true time, so the step back re-enters periods already closed.
      const to = Math.max(-60, Math.min(60, clockOffset + pick([-1, 1]) * Math.round(rand(10, 40))));
      log(`fault: the wall clock of ${stepped.name}'s agent steps ${to - clockOffset > 0 ? '+' : ''}${to - clockOffset} s (now ${to} s off)`);
      clockOffset = to;
      await writeFile(clockFile(), `${to >= 0 ? '+' : ''}${to}\n`);
      return;
    }
    case 'manager-kill': {
      // With a migration in progress: a VM is moved away from its group by hand, and the leader is
      // killed once it has marked the move back (within a round or two); either manager if none comes.
      await moveByHand();
      const marked = await waitFor('a migration to run', async () => (await readRunning(redis).catch(() => [])).find((r) => r.manager) ?? undefined, 45_000, 100).catch(() => undefined);
      const found = marked ? managers.findIndex((m) => m?.pid !== undefined && marked.manager?.includes(`:${m.pid}:`)) : -1;
      const i = found >= 0 ? found : Math.floor(Math.random() * 2);
      const m = managers[i];
      log(`fault: SIGKILL manager ${i}${marked ? ` while it migrates ${marked.vm}` : ' (no migration ran)'}`);
      if (m?.pid && alive(m.pid)) process.kill(m.pid, 'SIGKILL');
      if (marked) migrationKills++;
      await sleep(rand(1000, 5000));
      startManager(i);
      return;
    }
    case 'move-by-hand':
      await moveByHand();
      return;
  }
}

/** A running VM moved by hand (virsh, as a person would) to a host of the other site: the managers bring it back. */
async function moveByHand(): Promise<void> {
  const v = pick((await listVms(lab)).filter((x) => x.state === 'running'));
  if (!v) return;
  const here = hosts(lab).find((x) => x.name === v.host);
  const to = pick(hosts(lab).filter((x) => x.site !== here?.site));
  log(`fault: ${v.name} moved by hand ${v.host} -> ${to.name}`);
  await migrateVm(name, v.name, to.name).catch((err: Error) => log(`  (the move failed: ${err.message.split('\n')[0]})`));
}

/** Every guest's cumulative sent count per peer address, sampled with the wall time it was read at. */
type Sample = { at: number; sent: Map<string, number>; received: Map<string, number> };
const samples = new Map<string, Sample[]>();

async function sampleGuests(): Promise<void> {
  for (let i = 1; i <= GUESTS; i++) {
    const vm = `vm${i}`;
    const last = (await guestReports(name, vm).catch(() => [])).at(-1);
    if (!last) continue;
    const list = samples.get(vm) ?? [];
    list.push({ at: Date.now(), sent: new Map(Object.entries(last.tx).map(([ip, c]) => [ip, c.n])), received: new Map(Object.entries(last.rx).map(([ip, c]) => [ip, c.n])) });
    samples.set(vm, list);
  }
}

/** What `vm` had sent to `ip` by wall time `t`: the first sample read at or after t (its line was printed up to a second before). */
function sentBy(vm: string, ip: string, t: number): number {
  return sampleAt(vm, t).sent.get(ip) ?? 0;
}

/** What `vm` had received from `ip` by wall time `t`, as its generator counts. */
function receivedBy(vm: string, ip: string, t: number): number {
  return sampleAt(vm, t).received.get(ip) ?? 0;
}

function sampleAt(vm: string, t: number): Sample {
  const s = (samples.get(vm) ?? []).find((x) => x.at >= t);
  if (!s) throw new Error(`no sample of ${vm} after ${new Date(t).toISOString()}`);
  return s;
}

const started = Date.now();
try {
  lab = await labUp({ name, sites: 2, hostsPerSite: 2, delayMs: 5, rateMbit: 1000, periodSeconds: PERIOD, sensor: 'ebpf' });
  redis = new Redis(labRedisUrl(lab), { maxRetriesPerRequest: null });
  redis.on('error', () => undefined);
  const stepped = hosts(lab)[3]!;
  await writeFile(clockFile(), '+0\n');
  await signal(agentPaths(lab, stepped).pid, 'SIGTERM');
  await sleep(2000);
  await restartAgent(stepped, stepped);
  await startGuests(lab, GUESTS, { pattern: 'groups:2', vmRate: RATE, vmSize: 256, memory: 128 }, false);
  startManager(0);
  startManager(1);
  const sampler = setInterval(() => void sampleGuests(), 1000);
  const marks = setInterval(() => {
    void readRunning(redis)
      .then((rs) => {
        if (new Set(rs.map((r) => r.manager)).size > 1) twoAtOnce++;
      })
      .catch(() => undefined);
  }, 250);
  await sleep(3 * PERIOD * 1000);
  const first = Math.floor(Date.now() / 1000 / PERIOD) * PERIOD + PERIOD; // the first whole period counted
  log(`counting from period ${first}; faults for ${MINUTES} min`);
  const end = started + MINUTES * 60_000;
  while (Date.now() < end) {
    await sleep(rand(20_000, 60_000));
    if (Date.now() >= end) break;
    await fault(stepped).catch((err: Error) => log(`  fault failed: ${err.message}`));
  }
  // Everything back, the clock true again, and three quiet periods for the last reports to land.
  await writeFile(clockFile(), '+0\n');
  for (const h of hosts(lab)) await signal(libvirtdPidFile(lab, h), 'SIGCONT').catch(() => 0);
  await signal(redisPidFile(name), 'SIGCONT').catch(() => 0);
  for (const h of hosts(lab)) if (!(await livePid(agentPaths(lab, h).pid))) await restartAgent(h, stepped);
  // A clock that was ahead has already reported periods up to its offset beyond now: the counts of that
  // time go into the first period after them (agent/periods.ts), so the books end once it is passed.
  if (clockOffset > 0) await sleep(clockOffset * 1000 + PERIOD * 1000);
  const last = Math.floor(Date.now() / 1000 / PERIOD) * PERIOD - PERIOD; // the last whole period counted
  await sleep(4 * PERIOD * 1000);
  clearInterval(sampler);
  clearInterval(marks);
  await sampleGuests();
  await waitFor('every host to report the last period', async () => ((await redis.scard(K.reported(last))) === hosts(lab).length ? true : undefined), 120_000, 500);
  for (const m of managers) if (m?.pid && alive(m.pid)) process.kill(m.pid, 'SIGTERM');

  // The books: per directed pair, the periods' counts as the collector answers them (its detail query,
  // addresses resolved as every command resolves them) against both guests' generators. A datagram the
  // sender's generator wrote may never reach the wire: after some moves the lab's overlay left a guest
  // without its peer's ARP entry for minutes, and the kernel drops what it cannot address. So the
  // count must lie between what the receiver's generator got (nothing lost) and what the sender's
  // wrote (nothing doubled), within the tolerance.
  const ipOf = (i: number) => `10.${lab.index}.200.${i}`;
  const answer = await query(redis, { type: 'detail', span: (last - first) / PERIOD + 1, now: (last + PERIOD) * 1000 + 1, periodSeconds: PERIOD });
  if (answer.status !== 'ok' || answer.type !== 'detail') throw new Error(`the collector handed the books back: ${answer.status === 'reformulate' ? answer.reason : answer.type}`);
  const rows: string[] = [];
  const gaps: string[] = [];
  let worst = 0;
  let sentAll = 0;
  let receivedAll = 0;
  let countedAll = 0;
  for (let i = 1; i <= GUESTS; i++) {
    const vm = `vm${i}`;
    const peers = [...(samples.get(vm)?.at(-1)?.sent.keys() ?? [])];
    for (const ip of peers) {
      const j = Number(ip.split('.').at(-1));
      const [src, dst] = [domainName(lab, vm), domainName(lab, `vm${j}`)];
      const per = answer.detail.map((d) => ({ period: d.period, n: d.pairs.filter((x) => x.src === src && x.dst === dst).reduce((s, x) => s + x.messages, 0) }));
      const counted = per.reduce((s, x) => s + x.n, 0);
      const sent = sentBy(vm, ipOf(j), (last + PERIOD) * 1000) - sentBy(vm, ipOf(j), first * 1000);
      const received = receivedBy(`vm${j}`, ipOf(i), (last + PERIOD) * 1000) - receivedBy(`vm${j}`, ipOf(i), first * 1000);
      // Below what arrived: lost; above what was written: doubled.
      const off = Math.max(received - counted, counted - sent, 0);
      worst = Math.max(worst, off);
      sentAll += sent;
      receivedAll += received;
      countedAll += counted;
      rows.push(`| ${vm} → vm${j} | ${sent} | ${received} | ${counted} | ${off} |`);
      // Periods far from RATE x PERIOD, for a person to look at when the books do not balance.
      const odd = per.filter((x) => Math.abs(x.n - RATE * PERIOD) > RATE);
      if (odd.length) gaps.push(`${vm} -> vm${j}: ${odd.map((x) => `${new Date(x.period * 1000).toISOString().slice(11, 19)}=${x.n}`).join(' ')}`);
    }
  }
  if (gaps.length) log(`periods away from ${RATE * PERIOD} (UTC start = count):\n${gaps.join('\n')}`);
  // A period lost or doubled moves a pair by RATE x PERIOD (100). The generator's count is sampled once a
  // second at each end of the window (up to RATE each), and each end's period edge may hold 2.
  const tolerance = 2 * RATE + 4;
  const history = await readHistory(redis, 10_000);
  const since = history.filter((h) => h.at >= started);
  const outcome = (o: string) => since.filter((h) => h.outcome === o).length;
  if (!since.length)
    for (const i of [0, 1]) log(`no migration: manager ${i} said\n${(await readFile(join(labDir(name), `manager${i}.log`), 'utf8').catch(() => '')).split('\n').slice(-8).join('\n')}`);
  const table = [
    `Chaos run: ${MINUTES} min of faults on a 2 x 2 lab (5 s periods, eBPF, ${GUESTS} guests sending ${RATE} datagrams/s each, two managers with --apply); periods ${first} to ${last} (${(last - first) / PERIOD + 1}).`,
    '',
    '| fault | times |',
    '|---|---|',
    ...[...faults].sort().map(([k, n]) => `| ${k} | ${n} |`),
    '',
    "| pair | sent (sender's generator) | received (receiver's generator) | counted (periods) | outside [received, sent] |",
    '|---|---|---|---|---|',
    ...rows,
    '',
    `- Largest count outside [received, sent] on a pair: ${worst} datagrams (a lost or doubled period would be ${RATE * PERIOD}; tolerance ${tolerance}: the generators sampled once a second at each end, and the edges). All pairs: ${sentAll} sent, ${receivedAll} received, ${countedAll} counted${sentAll - receivedAll > tolerance ? `; the ${sentAll - receivedAll} sent and never received were dropped by the guests or the lab's network, before any tap` : ''}.`,
    `- Migrations during the run: ${since.length} (${outcome('ok')} ok, ${outcome('failed')} failed, ${outcome('aborted')} aborted; ${since.filter((h) => h.reason?.startsWith('adopted')).length} adopted by a new leader).`,
    `- Managers killed while one of their migrations ran: ${migrationKills}.`,
    `- Marks of running migrations from two managers at once (sampled every 250 ms): ${twoAtOnce}.`,
    `- Verdict: ${worst <= tolerance && twoAtOnce === 0 ? 'nothing lost, nothing doubled, never two managers migrating at once' : 'FAILED (see above)'}.`,
  ].join('\n');
  process.stdout.write(`\n${table}\n`);
  await maybeWriteBlock(writeDocs, 'chaos', table);
  await maybeWriteBlock(
    writeDocs,
    'chaos-summary',
    `Chaos run (\`node dist/test/bench/chaos.js ${MINUTES}\`): ${[...faults.values()].reduce((a, b) => a + b, 0)} faults in ${MINUTES} min; largest count outside [received, sent] on a pair ${worst} datagrams (a lost period: ${RATE * PERIOD}); ${since.length} migrations; two managers migrating at once: ${twoAtOnce} times.`,
    join(packageRoot, 'README.md'),
  );
  if (worst > tolerance || twoAtOnce) {
    process.exitCode = 1;
    // The lab's logs (agents, managers, libvirtd) are kept for a person: the lab itself goes.
    const keep = `/tmp/chaos-${name}`;
    await run('cp', ['-r', labDir(name), keep]).catch(() => undefined);
    log(`the lab's logs are kept in ${keep}`);
  }
} finally {
  for (const m of managers) if (m?.pid && alive(m.pid)) process.kill(m.pid, 'SIGKILL');
  redis?.disconnect();
  await labDown(name).catch((err: Error) => log(`lab down: ${err.message}`));
}
