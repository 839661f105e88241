// Lab timings for docs/measurements.md: bring-up, guest boot, and live
// migration of a 128 MiB guest inside a site and between sites, side by side in
// one run. Run as root after setup:
//   node dist/test/bench/lab.js [rounds] [inter-site Mbit/s] [--write-docs]
// (--write-docs: also into docs/measurements.md, block `lab`).
import { readFile, stat } from 'node:fs/promises';
import { labDown, labUp } from '../../src/lab/lab.js';
import { addVm, migrateVm, type Migration } from '../../src/lab/vm.js';
import { guestReports, kernelTrouble } from '../../src/lab/console.js';
import { consoleLog } from '../../src/lab/state.js';
import { sleep } from '../../src/util/exec.js';
import { uniqueName } from '../helpers/names.js';
import { benchArgs, maybeWriteBlock } from './doc.js';

const { writeDocs, args } = benchArgs();
const rounds = Number(args[0] ?? 3);
const rateMbit = Number(args[1] ?? 1000);
const name = uniqueName('b');
const RATE = 100;
type Result = Migration & { gapMs: number; kernelErrors: number };
const offsets = new Map<string, number>();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timedMigration(vm: string, to: string, watcher: string, ip: string): Promise<Result> {
  const offset = (await stat(consoleLog(name, watcher))).size;
  const m = await migrateVm(name, vm, to);
  await sleep(3000);
  const text = (await readFile(consoleLog(name, vm), 'utf8')).slice(offsets.get(vm) ?? 0);
  const kernelErrors = kernelTrouble(text).length;
  offsets.set(vm, text.length + (offsets.get(vm) ?? 0));
  const gapMs = Math.max(...(await guestReports(name, watcher, offset)).map((r) => r.rx[ip]?.gap_ms ?? 0));
  process.stdout.write(`  ${m.vm} ${m.from} -> ${m.to}: ${m.seconds.toFixed(2)} s, downtime ${m.downtimeMs} ms, traffic gap ${gapMs} ms, guest kernel errors ${kernelErrors}\n`);
  return { ...m, gapMs, kernelErrors };
}

try {
  const lab = await labUp({ name, sites: 2, hostsPerSite: 2, delayMs: 20, rateMbit });
  const boots: number[] = [];
  for (const [vm, host, index] of [
    ['vm1', 'a1', 1],
    ['vm2', 'a2', 2],
  ] as const) {
    const added = await addVm(name, { name: vm, host, index, pattern: 'pairs', cluster: 2, rate: RATE, size: 256, memoryMiB: 128, wait: true });
    boots.push(added.bootSeconds!);
  }
  await sleep(5000);
  const ip = `10.${lab.index}.200.1`;
  const lan: Result[] = [];
  const wan: Result[] = [];
  // vm1 goes a1 -> b1 (between sites) -> a1 ... and a1 <-> a2 (inside site a) by turns.
  for (let r = 0; r < rounds; r++) {
    wan.push(await timedMigration('vm1', 'b1', 'vm2', ip));
    wan.push(await timedMigration('vm1', 'a1', 'vm2', ip));
    lan.push(await timedMigration('vm1', 'a2', 'vm2', ip));
    lan.push(await timedMigration('vm1', 'a1', 'vm2', ip));
  }
  const row = (label: string, ms: Result[]) => {
    const gaps = ms.map((m) => m.gapMs);
    return (
      `| ${label} | ${ms.length} | ${median(ms.map((m) => m.seconds)).toFixed(2)} s | ${median(ms.map((m) => m.downtimeMs ?? NaN))} ms | ` +
      `${median(gaps)} ms (${Math.min(...gaps)} – ${Math.max(...gaps)}) | ${median(ms.map((m) => m.dataMiB ?? NaN)).toFixed(1)} MiB | ` +
      `${ms.reduce((n, m) => n + m.kernelErrors, 0)} |`
    );
  };
  const ratio = median(wan.map((m) => m.seconds)) / median(lan.map((m) => m.seconds));
  const rate = rateMbit >= 1000 && rateMbit % 1000 === 0 ? `${rateMbit / 1000} Gbit/s` : `${rateMbit} Mbit/s`;
  const block = [
    '| measure | value |',
    '|---|---|',
    `| lab bring-up, 2 sites × 2 hosts (4 libvirtd, network, Redis, delay line) | ${lab.upSeconds!.toFixed(1)} s |`,
    `| guest boot, \`virsh start\` to traffic generator up | ${boots.map((b) => `${b.toFixed(1)} s`).join(', ')} |`,
    '',
    '| 128 MiB guest, live migration | runs | median time | median downtime | traffic gap, median (min–max) | data sent | guest kernel errors |',
    '|---|---|---|---|---|---|---|',
    row('inside a site', lan),
    row(`between sites (20 ms, ${rate})`, wan),
    '',
    `A move between sites takes ${ratio.toFixed(1)}× as long as one inside a site.`,
  ].join('\n');
  process.stdout.write(`\n${block}\n`);
  await maybeWriteBlock(writeDocs, 'lab', block);
} finally {
  await labDown(name);
}
