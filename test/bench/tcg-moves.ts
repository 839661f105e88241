// Busy Debian guests moved between the lab's sites under TCG, live against paused, for
// docs/measurements.md: under TCG, Debian 12's QEMU 7.2 corrupts the memory of some busy guests
// migrated live (the guest kernel then oopses and reboots). The web service's application tier
// (vm2, on the demo's lab: 20 ms and 1 Gbit/s between the sites) moves back and forth, live and
// paused in turn, while the load generator keeps it busy; 25 s after each move its console is
// read for a second boot or a kernel error. A corrupted guest is replaced by a fresh lab.
// Run as root after setup:
//   node dist/test/bench/tcg-moves.js [moves per variant] [--write-docs]   (block `tcg-moves`)
import { readFile } from 'node:fs/promises';
import { labDown, labUp, requireLab } from '../../src/lab/lab.js';
import { kernelTrouble } from '../../src/lab/console.js';
import { ensureDebianImage } from '../../src/lab/debian.js';
import { consoleLog } from '../../src/lab/state.js';
import { locateVm, migrateVm } from '../../src/lab/vm.js';
import { startJob, type JobWatch } from '../../src/lab/workload.js';
import { sleep, waitFor } from '../../src/util/exec.js';
import { configureLogging } from '../../src/util/log.js';
import { uniqueName } from '../helpers/names.js';
import { benchArgs, maybeWriteBlock } from './doc.js';
import { median } from './stats.js';

const { writeDocs, args } = benchArgs();
const MOVES = Number(args[0] ?? 8);
const SETTLE_MS = 25_000;
configureLogging({ to: { file: '/dev/null' } });

interface Move {
  live: boolean;
  seconds: number;
  downtimeMs?: number;
  corrupted: boolean;
}

let lab = '';
let job: JobWatch | undefined;
let offset = 0;

async function freshLab(): Promise<void> {
  job?.stop();
  if (lab) await labDown(lab);
  lab = uniqueName('b');
  offset = 0;
  await labUp({ name: lab, sites: 2, hostsPerSite: 2, delayMs: 20, rateMbit: 1000, periodSeconds: 5 });
  job = await startJob(lab, { kind: 'web', requests: 10_000_000, clients: 2, memoryMiB: 256 }, () => undefined);
  await waitFor('the web service to report', async () => (job!.latest() ? true : undefined), 300_000, 500);
  await corrupted(); // its first boot
}

/** What vm2's console says since the last look: a second boot or a kernel error. */
async function corrupted(): Promise<boolean> {
  const text = await readFile(consoleLog(lab, 'vm2'), 'utf8');
  const since = text.slice(offset);
  offset = text.length;
  return /^VCGUEST up/m.test(since) || kernelTrouble(since).length > 0;
}

const moves: Move[] = [];
try {
  await ensureDebianImage(() => undefined);
  await freshLab();
  for (let i = 0; i < 2 * MOVES; i++) {
    const live = i % 2 === 0;
    const from = (await locateVm(await requireLab(lab), 'vm2')).name;
    const m = await migrateVm(lab, 'vm2', from === 'b1' ? 'a2' : 'b1', live);
    await sleep(SETTLE_MS);
    const bad = await corrupted();
    moves.push({ live, seconds: m.seconds, ...(m.downtimeMs !== undefined ? { downtimeMs: m.downtimeMs } : {}), corrupted: bad });
    process.stdout.write(`${live ? 'live  ' : 'paused'} ${from} -> ${m.to} in ${m.seconds.toFixed(1)} s, downtime ${m.downtimeMs ?? '?'} ms${bad ? ': CORRUPTED' : ''}\n`);
    if (bad) await freshLab();
  }
  const rows = [true, false].map((live) => {
    const ms = moves.filter((m) => m.live === live);
    const down = ms.flatMap((m) => (m.downtimeMs !== undefined ? [m.downtimeMs] : []));
    return `| ${live ? 'live (`--live`)' : 'paused (manager.live false)'} | ${ms.length} | ${ms.filter((m) => m.corrupted).length} | ${median(ms.map((m) => m.seconds)).toFixed(1)} s | ${median(down).toFixed(0)} ms |`;
  });
  const block = [
    `The web service's application tier (Debian, 256 MiB, TCG) moved between the sites (20 ms, 1 Gbit/s, memory over TLS) under its load generator, live and paused in turn; a move counts as corrupting when the guest's console shows a kernel error or a second boot within ${SETTLE_MS / 1000} s (\`node dist/test/bench/tcg-moves.js ${MOVES}\`):`,
    '',
    '| migration | moves | guests corrupted | time (median) | downtime (median) |',
    '|---|---:|---:|---:|---:|',
    ...rows,
  ].join('\n');
  process.stdout.write(`\n${block}\n`);
  await maybeWriteBlock(writeDocs, 'tcg-moves', block);
} finally {
  job?.stop();
  if (lab) await labDown(lab);
}
