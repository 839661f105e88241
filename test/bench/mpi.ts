// Real applications on the lab, measured in one run. Not in CI (about 6 minutes). Run as root after
// setup, with nothing else heavy running:
//   node dist/test/bench/mpi.js [MOVES] [--write-docs]
// (--write-docs: docs/measurements.md block `mpi`, README block `mpi-summary`).
//
// 1. The Debian guest image built from scratch (mmdebstrap, into a temporary directory).
// 2. Four Debian guests (256 MiB, TCG) booted, each from `virsh start` to its "up" line.
// 3. An MPI stencil on them (src/lab/debian/stencil.c), its ranks split across the sites (a, b, a, b;
//    20 ms one way between the sites): its own time per iteration while split, then after the bench
//    gathers the ranks of site b onto site a (live migrations with their disks on the shared storage),
//    as the median of its reports over the same span.
// 4. Live migration with disks, the job still running: MOVES migrations inside site a with the disk on
//    the shared storage (no copy, --unsafe), and MOVES of an idle Debian guest whose disk is its
//    host's own (--copy-storage-all), time from virsh and downtime from libvirt (domjobinfo --completed).
// 5. The web service (src/lab/debian/vcweb.py) split a1, b1, a2, then its application tier moved to a2
//    beside Redis: its load generator's median time per request over the same span before and after.
// 6. The agents' counts against the guests' own: two short 2-rank jobs on fresh guests (a1 and b1),
//    one with the guests' segmentation offload off and one with it on, each guest's own account (its
//    interface, and with offload on TCP's segments: src/lab/counts.ts, gaps) against what the agents put
//    in its pairs over every period since it started; and, for offload on, its interface alone.
// Kernel errors in the guests' consoles are counted: Debian 12's QEMU 7.2 has corrupted TCG guests
// during long pre-copies under network traffic (docs/measurements.md).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { labRedisUrl } from '../../src/lab/agents.js';
import { kernelTrouble } from '../../src/lab/console.js';
import { type CountCheck, checkCounts, countError, type Gap, gaps } from '../../src/lab/counts.js';
import { ensureDebianImage } from '../../src/lab/debian.js';
import { labDown, labUp, requireLab } from '../../src/lab/lab.js';
import { consoleLog } from '../../src/lab/state.js';
import { addVm, locateVm, migrateVm, type Migration } from '../../src/lab/vm.js';
import { domainName } from '../../src/lab/topology.js';
import { destroyDomain } from '../../src/libvirt/virsh.js';
import { type JobWatch, startJob } from '../../src/lab/workload.js';
import { packageRoot } from '../../src/paths.js';
import { run, sleep, waitFor } from '../../src/util/exec.js';
import { uniqueName } from '../helpers/names.js';
import { benchArgs, maybeWriteBlock, README } from './doc.js';
import { median } from './stats.js';

const { writeDocs, args } = benchArgs();
const MOVES = Number(args[0] ?? 4);
const SPAN_MS = 30_000;
const PERIOD = 10;
const name = uniqueName('m');
const log = (s: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
/** The largest gap between agents and guest over the rows, signed, in percent of the guest's count. */
/** The largest of the gaps, signed, in percent. */
const worst = (xs: number[]) => {
  const w = xs.reduce((a, b) => (Math.abs(b) > Math.abs(a) ? b : a), 0);
  return `${w >= 0 ? '+' : ''}${w.toFixed(2)} %`;
};
const worstOf = (gs: Gap[], k: 'sentBytes' | 'sentFrames' | 'receivedBytes') => worst(gs.map((g) => g[k]));
/** A job that reported nothing over a span: what its guests' consoles say, as the error. */
async function silent(job: JobWatch, when: string): Promise<never> {
  const trouble = await job.guestTrouble();
  throw new Error(`the ${job.title} reported nothing ${when}${trouble.length ? `; a guest failed:\n${trouble.join('\n')}` : ''}\nits console:\n${await job.tail()}`);
}

/** Powers guests off (their disks stay): a finished phase's guests would take the next one's CPU. */
async function stopVms(vms: string[]): Promise<void> {
  const lab = await requireLab(name);
  for (const vm of vms) await destroyDomain((await locateVm(lab, vm)).uri, domainName(lab, vm));
}
const range = (xs: number[], d = 1) => `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)})`;

// 1. The image, from scratch.
const scratch = await mkdtemp(join(tmpdir(), 'vc-image-'));
let buildSeconds: number;
try {
  const t = Date.now();
  await run('sh', [join(packageRoot, 'src', 'lab', 'debian', 'build.sh'), scratch], { timeoutMs: 30 * 60_000 });
  buildSeconds = (Date.now() - t) / 1000;
  log(`image built from scratch in ${buildSeconds.toFixed(0)} s`);
} finally {
  await rm(scratch, { recursive: true, force: true });
}
await ensureDebianImage(log);

let up = false;
try {
  const lab = await labUp({ name, sites: 2, hostsPerSite: 2, delayMs: 20, rateMbit: 1000, periodSeconds: PERIOD });
  up = true;
  // 2 and 3. The job, which runs until the lab goes.
  const boots: number[] = [];
  const job = await startJob(name, { kind: 'mpi', ranks: 4, iters: 1_000_000, haloBytes: 4096, memoryMiB: 256 }, (vm) => {
    boots.push(vm.bootSeconds!);
    log(`${vm.name} on ${vm.host}: up in ${vm.bootSeconds!.toFixed(1)} s`);
  });
  await waitFor('the MPI job to report', async () => (job.latest() ? true : undefined), 300_000, 500);
  const t1 = Date.now();
  await sleep(SPAN_MS);
  const split = job.medianMs(t1, Date.now())!;
  log(`split across the sites: ${split.toFixed(1)} ms per iteration`);
  const gather: Migration[] = [];
  for (const [vm, to] of [
    ['vm2', 'a1'],
    ['vm4', 'a2'],
  ] as const) {
    gather.push(await migrateVm(name, vm, to));
    log(`gathered ${vm} -> ${to} in ${gather.at(-1)!.seconds.toFixed(1)} s`);
  }
  await sleep(3000);
  const t2 = Date.now();
  await sleep(SPAN_MS);
  const together = job.medianMs(t2, Date.now()) ?? (await silent(job, 'after the gathering'));
  log(`together in site a: ${together.toFixed(1)} ms per iteration`);

  // 4. Migrations with disks: shared (vm3, the job running), then copied (an idle guest of its own).
  const shared: Migration[] = [];
  for (let i = 0; i < MOVES; i++) {
    shared.push(await migrateVm(name, 'vm3', i % 2 ? 'a2' : 'a1'));
    log(`shared disk: vm3 ${shared.at(-1)!.from} -> ${shared.at(-1)!.to} in ${shared.at(-1)!.seconds.toFixed(1)} s, downtime ${shared.at(-1)!.downtimeMs} ms`);
  }
  await addVm(name, { name: 'vm5', host: 'a1', index: 5, pattern: 'idle', cluster: 5, rate: 0, size: 256, memoryMiB: 256, wait: true, image: 'debian', disk: 'local' });
  const copied: Migration[] = [];
  for (let i = 0; i < MOVES; i++) {
    copied.push(await migrateVm(name, 'vm5', i % 2 ? 'a1' : 'a2'));
    log(`local disk copied: vm5 ${copied.at(-1)!.from} -> ${copied.at(-1)!.to} in ${copied.at(-1)!.seconds.toFixed(1)} s, downtime ${copied.at(-1)!.downtimeMs} ms`);
  }
  await job.poll();
  job.stop();
  if (job.end) log(`the job ended: ${job.end.line}`);
  // Their CPU is the next phases': the stencil runs until stopped.
  await stopVms(['vm1', 'vm2', 'vm3', 'vm4', 'vm5']);

  // 5. The web service split a, b, a, then its application tier moved beside Redis.
  const web = await startJob(name, { kind: 'web', requests: 1_000_000, clients: 2, memoryMiB: 256, first: 21 }, () => undefined);
  await waitFor('the web service to report', async () => (web.latest() || web.end ? true : undefined), 300_000, 500);
  if (web.end) throw new Error(`the web service ended early: ${web.end.line}\n${await web.tail()}`);
  const w1 = Date.now();
  await sleep(SPAN_MS);
  const webSplit = web.medianMs(w1, Date.now())!;
  log(`web service split across the sites: ${webSplit.toFixed(1)} ms per request`);
  const webMove = await migrateVm(name, 'vm22', 'a2');
  log(`gathered vm22 -> a2 in ${webMove.seconds.toFixed(1)} s`);
  await sleep(3000);
  const w2 = Date.now();
  await sleep(SPAN_MS);
  const webTogether = web.medianMs(w2, Date.now()) ?? (await silent(web, 'after the gathering'));
  log(`web service together in site a: ${webTogether.toFixed(1)} ms per request`);
  await web.poll();
  web.stop();
  // It runs until stopped: an end here is a failure (the poll above may have read one).
  const ended = web.end as JobWatch['end'];
  if (ended) throw new Error(`the web service ended: ${ended.line}\n${await web.tail()}`);
  await stopVms(web.vms);

  // 6. Counts, offload off then on.
  const counts: Record<'off' | 'on', CountCheck[]> = { off: [], on: [] };
  const gapsOf: Record<'off' | 'on', Gap[]> = { off: [], on: [] };
  const redis = new Redis(labRedisUrl(lab), { maxRetriesPerRequest: null });
  try {
    for (const [offload, first] of [
      ['off', 11],
      ['on', 13],
    ] as const) {
      const from = Date.now();
      const small = await startJob(name, { kind: 'mpi', ranks: 2, iters: 400, haloBytes: 4096, memoryMiB: 256, first, ...(offload === 'off' ? { offload } : {}) }, () => undefined);
      const done = await small.finished(5 * 60_000);
      small.stop();
      if (!small.end?.ok) throw new Error(`the counting job (offload ${offload}) ${done ? `failed: ${small.end!.line}` : 'did not end'}\n${await small.tail()}`);
      counts[offload] = await checkCounts(name, redis, small.vms, from, PERIOD);
      gapsOf[offload] = gaps(counts[offload]);
      for (const r of counts[offload]) log(`counts, offload ${offload}, ${r.vm}: ${JSON.stringify(r)}`);
      for (const g of gapsOf[offload]) log(`gaps, offload ${offload}: ${JSON.stringify(g)}`);
    }
  } finally {
    redis.disconnect();
  }
  const errorLines = (
    await Promise.all(
      ['vm1', 'vm2', 'vm3', 'vm4', 'vm5', 'vm21', 'vm22', 'vm23', 'vm11', 'vm12', 'vm13', 'vm14'].map(async (vm) =>
        kernelTrouble(await readFile(consoleLog(name, vm), 'utf8').catch(() => '')).map((l) => `${vm}: ${l}`),
      ),
    )
  ).flat();
  for (const l of errorLines) log(`kernel error line: ${l}`);
  const errors = errorLines.length;

  const secs = (ms: Migration[]) => ms.map((m) => m.seconds);
  const downs = (ms: Migration[]) => ms.map((m) => m.downtimeMs ?? Number.NaN);
  const table = [
    `Real applications on a 2 x 2 lab (20 ms one way between the sites, 1 Gbit/s), Debian 12 guests of 256 MiB under TCG, one run of \`node dist/test/bench/mpi.js ${MOVES}\`: medians (min-max).`,
    '',
    '| what | figure |',
    '|---|---|',
    `| Debian guest image built from scratch (mmdebstrap, ext4, qcow2) | ${buildSeconds.toFixed(0)} s |`,
    `| boot, \`virsh start\` to the guest's "up" line (4 guests) | ${range(boots)} s |`,
    `| MPI stencil, 4 ranks split a, b, a, b: time per iteration | ${split.toFixed(1)} ms |`,
    `| the same job after 2 ranks were gathered into site a | ${together.toFixed(1)} ms (${((100 * together) / split).toFixed(0)} % of split) |`,
    `| web service, web a1 / application b1 / Redis a2, 2 clients: median time per request | ${webSplit.toFixed(1)} ms |`,
    `| the same after the application moved to a2 (one migration between sites, ${webMove.seconds.toFixed(1)} s) | ${webTogether.toFixed(1)} ms (${((100 * webTogether) / webSplit).toFixed(0)} % of split) |`,
    `| gathering migrations between sites, disk shared, job running (time / downtime) | ${range(secs(gather))} s / ${range(downs(gather), 0)} ms |`,
    `| migration inside a site, disk on the shared storage (no copy), job running | ${range(secs(shared))} s / ${range(downs(shared), 0)} ms |`,
    `| migration inside a site, idle guest, local disk copied (\`--copy-storage-all\`) | ${range(secs(copied))} s / ${range(downs(copied), 0)} ms |`,
    `| agents against the guests' own counters, offload off, 2-rank job on a1 and b1 (bytes sent / frames sent / bytes received; worst guest) | ${worstOf(gapsOf.off, 'sentBytes')} / ${worstOf(gapsOf.off, 'sentFrames')} / ${worstOf(gapsOf.off, 'receivedBytes')} |`,
    `| the same, offload on: sent against the guest's TCP segments, received against its partner's | ${worstOf(gapsOf.on, 'sentBytes')} / ${worstOf(gapsOf.on, 'sentFrames')} / ${worstOf(gapsOf.on, 'receivedBytes')} |`,
    `| offload on, agents against the guest's interface alone (it counts a super-packet once; bytes sent / received) | ${worst(counts.on.map((r) => countError(r.agent.txBytes, r.guest.txBytes)))} / ${worst(counts.on.map((r) => countError(r.agent.rxBytes, r.guest.rxBytes)))} |`,
    `| guest kernel error lines in the consoles | ${errors} |`,
  ].join('\n');
  process.stdout.write(`\n${table}\n`);
  await maybeWriteBlock(writeDocs, 'mpi', table);
  await maybeWriteBlock(
    writeDocs,
    'mpi-summary',
    `Measured by \`node dist/test/bench/mpi.js\` (one run): the image builds from scratch in ${buildSeconds.toFixed(0)} s and a guest boots in ${median(boots).toFixed(1)} s; the MPI stencil takes ${split.toFixed(1)} ms per iteration split across the sites and ${together.toFixed(1)} ms gathered (${((100 * together) / split).toFixed(0)} %); with the job running a migration takes ${median(secs(shared)).toFixed(1)} s (downtime ${median(downs(shared)).toFixed(0)} ms) with the disk shared, and an idle guest's ${median(secs(copied)).toFixed(1)} s (downtime ${median(downs(copied)).toFixed(0)} ms) with its local disk copied. The web service answers in ${webSplit.toFixed(1)} ms a request split across the sites and ${webTogether.toFixed(1)} ms (${((100 * webTogether) / webSplit).toFixed(0)} %) once its application sits beside Redis. Against the guests' own counters the agents' bytes were off by at most ${worstOf(gapsOf.off, 'sentBytes')} sent and ${worstOf(gapsOf.off, 'receivedBytes')} received with the guests' segmentation offload off, and ${worstOf(gapsOf.on, 'sentBytes')} / ${worstOf(gapsOf.on, 'receivedBytes')} with it on (against TCP's segments).`,
    README,
  );
} finally {
  if (up) await labDown(name).catch((err: Error) => log(`lab down: ${err.message}`));
}
