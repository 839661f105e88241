// The lab guests' clocks against the host's, for docs/measurements.md: guests booted while both
// CPUs are busy (as in a CI run, where a guest once kept time 4 % slow for a whole suite), then
// each guest's seconds per host second while their generators run. A guest's VCGEN line carries
// its own time (t_ms); the host stamps the moment each new line appears in the console file.
// Run as root after setup:
//   node dist/test/bench/guest-clock.js [guests] [seconds] [--write-docs]   (block `guest-clock`)
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { labDown, labUp } from '../../src/lab/lab.js';
import { addVm } from '../../src/lab/vm.js';
import { guestClock, parseReports } from '../../src/lab/console.js';
import { consoleLog } from '../../src/lab/state.js';
import { sleep } from '../../src/util/exec.js';
import { uniqueName } from '../helpers/names.js';
import { benchArgs, maybeWriteBlock } from './doc.js';

const { writeDocs, args } = benchArgs();
const GUESTS = Number(args[0] ?? 3);
const SECONDS = Number(args[1] ?? 120);
const name = uniqueName('b');
const vms = Array.from({ length: GUESTS }, (_, i) => `vm${i + 1}`);

/** The newest whole VCGEN line's t_ms, and the guest's clock source from its VCGUEST up line. */
async function latest(vm: string): Promise<{ tMs?: number; clock: string }> {
  const text = await readFile(consoleLog(name, vm), 'utf8').catch(() => '');
  return { tMs: parseReports(text).at(-1)?.t_ms, clock: guestClock(text) ?? 'not printed' };
}

const burners: ChildProcess[] = [];
try {
  await labUp({ name, sites: 1, hostsPerSite: 1, delayMs: 1, rateMbit: 1000, periodSeconds: 5 });
  // Both CPUs busy while the guests boot: their kernels calibrate what they calibrate then.
  for (let i = 0; i < 2; i++) burners.push(spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }));
  for (const [i, vm] of vms.entries()) {
    await addVm(name, { name: vm, host: 'a1', index: i + 1, pattern: 'all', cluster: GUESTS, rate: 20, size: 256, memoryMiB: 128, wait: true });
  }
  for (const b of burners.splice(0)) b.kill();
  // For each guest: (host ms, guest ms) at the first and the last new line seen, polled every 20 ms.
  const first = new Map<string, [number, number]>();
  const last = new Map<string, [number, number]>();
  const clocks = new Map<string, string>();
  for (const until = Date.now() + SECONDS * 1000; Date.now() < until; await sleep(20)) {
    for (const vm of vms) {
      const { tMs, clock } = await latest(vm);
      clocks.set(vm, clock);
      if (tMs === undefined || last.get(vm)?.[1] === tMs) continue;
      const seen: [number, number] = [Date.now(), tMs];
      if (last.has(vm) && !first.has(vm)) first.set(vm, seen); // the first line seen appeared at an unknown time before
      last.set(vm, seen);
    }
  }
  const rows = vms.map((vm) => {
    const [h0, g0] = first.get(vm) ?? [0, 0];
    const [h1, g1] = last.get(vm) ?? [0, 0];
    const rate = h1 > h0 ? (g1 - g0) / (h1 - h0) : Number.NaN;
    const off = (rate - 1) * 100;
    return `| ${vm} | ${clocks.get(vm)} | ${rate.toFixed(4)} | ${off >= 0 ? '+' : ''}${off.toFixed(2)} % | ${((h1 - h0) / 1000).toFixed(0)} s |`;
  });
  const block = [
    `${GUESTS} guests booted one after the other on one lab host while both CPUs ran a busy loop, then measured for ${SECONDS} s (\`node dist/test/bench/guest-clock.js ${GUESTS} ${SECONDS}\`; a guest prints a line a second, and the host stamps each within 20 ms of its appearing):`,
    '',
    '| guest | clock source | guest seconds per host second | off by | over |',
    '|---|---|---:|---:|---:|',
    ...rows,
  ].join('\n');
  process.stdout.write(`\n${block}\n`);
  await maybeWriteBlock(writeDocs, 'guest-clock', block);
} finally {
  for (const b of burners) b.kill();
  await labDown(name);
}
