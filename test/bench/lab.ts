// Lab timings for the README: bring-up, guest boot, and live migration of a
// 128 MiB guest inside a site and between sites, side by side in one run.
// Run as root after setup: node dist/test/bench/lab.js [rounds] [inter-site Mbit/s]
import { readFile, stat } from 'node:fs/promises';
import { labDown, labUp } from '../../src/lab/lab.js';
import { addVm, migrateVm, type Migration } from '../../src/lab/vm.js';
import { guestReports } from '../../src/lab/console.js';
import { consoleLog } from '../../src/lab/state.js';
import { sleep } from '../../src/util/exec.js';
import { table } from '../../src/cli/table.js';
import { uniqueName } from '../helpers/names.js';

const rounds = Number(process.argv[2] ?? 3);
const rateMbit = Number(process.argv[3] ?? 1000);
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
  const kernelErrors = text.split('\n').filter((l) => /\] (BUG|Oops|list_(add|del) corruption|Kernel panic)/.test(l)).length;
  offsets.set(vm, text.length + (offsets.get(vm) ?? 0));
  const gapMs = Math.max(...(await guestReports(name, watcher, offset)).map((r) => r.rx[ip]?.gap_ms ?? 0));
  process.stdout.write(`  ${m.vm} ${m.from} -> ${m.to}: ${m.seconds.toFixed(2)} s, downtime ${m.downtimeMs} ms, traffic gap ${gapMs} ms, guest kernel errors ${kernelErrors}\n`);
  return { ...m, gapMs, kernelErrors };
}

try {
  const lab = await labUp({ name, sites: 2, hostsPerSite: 2, delayMs: 20, rateMbit });
  const boots: number[] = [];
  for (const [vm, host, index] of [['vm1', 'a1', 1], ['vm2', 'a2', 2]] as const) {
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
  const row = (label: string, ms: Result[]) => [
    label, ms.length, median(ms.map((m) => m.seconds)).toFixed(2), median(ms.map((m) => m.downtimeMs ?? NaN)),
    `${median(ms.map((m) => m.gapMs))} (${Math.min(...ms.map((m) => m.gapMs))}-${Math.max(...ms.map((m) => m.gapMs))})`,
    median(ms.map((m) => m.dataMiB ?? NaN)).toFixed(1),
    ms.reduce((n, m) => n + m.kernelErrors, 0),
  ];
  process.stdout.write(`lab bring-up (2 sites x 2 hosts, 4 libvirtd): ${lab.upSeconds!.toFixed(1)} s\n`);
  process.stdout.write(`guest boot (virsh start to traffic generator up): ${boots.map((b) => b.toFixed(1)).join(' s, ')} s\n\n`);
  process.stdout.write(table(['128 MiB guest, live', 'RUNS', 'MEDIAN S', 'DOWNTIME MS', 'TRAFFIC GAP MS (MIN-MAX)', 'MIB SENT', 'GUEST KERNEL ERRORS'], [
    row('inside a site', lan), row(`between sites (20 ms, ${rateMbit} Mbit/s)`, wan),
  ]) + '\n');
  const ratio = median(wan.map((m) => m.seconds)) / median(lan.map((m) => m.seconds));
  process.stdout.write(`between sites / inside a site: ${ratio.toFixed(1)}x the migration time\n`);
} finally {
  await labDown(name);
}
