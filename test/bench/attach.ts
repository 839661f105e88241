// Attaching a host's taps at scale: N real tap devices in a namespace of
// their own, the real eBPF sensor. Times the first attach of all of them, a
// steady reconcile (taps it attached itself are trusted), a full reconcile
// (every tap's filters read again), removing them all, and, for comparison,
// the way the sensor attached before: one `tc` process per command.
//   node dist/test/bench/attach.js [TAPS...] [--write-docs]   (default 100 1000)
import { rm } from 'node:fs/promises';
import { bpfObject } from '../../src/paths.js';
import { run } from '../../src/util/exec.js';
import { uniqueName } from '../helpers/names.js';
import { MEASUREMENTS, README, benchArgs, maybeWriteBlock } from './doc.js';

process.env.VIRT_COHORT_LOG_LEVEL ??= 'warn';
const { EbpfSensor } = await import('../../src/sensor/ebpf.js');

const ATTACH_TARGET_S = 5;
const RECONCILE_TARGET_S = 1;
/** Taps attached one tc process per command, for comparison (more would take minutes). */
const PER_COMMAND_TAPS = 100;
const tapName = (i: number) => `vca${i}`;

const seconds = async (f: () => Promise<unknown>) => {
  const t0 = process.hrtime.bigint();
  await f();
  return Number(process.hrtime.bigint() - t0) / 1e9;
};

interface Row {
  taps: number;
  attachS: number;
  failed: number;
  steadyS: number;
  fullS: number;
  removeS: number;
  perCommandS?: number;
}

/** The earlier path: per tap, qdisc show, qdisc add, filter show x 2, filter replace x 2 (one tc process each). */
async function perCommand(ns: string, taps: number, progs: string): Promise<number> {
  return seconds(async () => {
    for (let i = 0; i < taps; i++) {
      const dev = tapName(i);
      const tc = (args: string[]) => run('tc', args, { netns: ns });
      await tc(['qdisc', 'show', 'dev', dev]);
      await tc(['qdisc', 'replace', 'dev', dev, 'clsact']);
      for (const hook of ['ingress', 'egress']) await tc(['filter', 'show', 'dev', dev, hook]);
      for (const [hook, prog] of [
        ['ingress', 'vc_from_vm'],
        ['egress', 'vc_to_vm'],
      ]) {
        await tc(['filter', 'replace', 'dev', dev, hook!, 'pref', '49344', 'handle', '0xc0c0', 'bpf', 'direct-action', 'object-pinned', `${progs}/${prog}`, 'classid', `:${(i + 1).toString(16)}`]);
      }
    }
  });
}

async function measure(taps: number): Promise<Row> {
  const id = uniqueName('a', 5);
  const ns = `vca-${id}`;
  const pinRoot = `/sys/fs/bpf/vca-${id}`;
  try {
    await run('ip', ['netns', 'add', ns]);
    const cmds = Array.from({ length: taps }, (_, i) => `tuntap add dev ${tapName(i)} mode tap\nlink set ${tapName(i)} up`).join('\n');
    await run('ip', ['-n', ns, '-batch', '-'], { input: `${cmds}\n`, timeoutMs: 600_000 });
    const sensor = await EbpfSensor.open({ pinRoot, netns: ns, object: bpfObject });
    const want = Array.from({ length: taps }, (_, i) => ({ tap: tapName(i), vm: 1000 + i }));
    let failed = 0;
    const attachS = await seconds(async () => {
      failed = (await sensor.reconcile(want)).failed.length;
    });
    if ((await sensor.attached()).length !== taps - failed) throw new Error(`attached ${(await sensor.attached()).length} of ${taps}`);
    const steadyS = await seconds(() => sensor.reconcile(want));
    const fullS = await seconds(() => sensor.reconcile(want, true));
    const removeS = await seconds(() => sensor.reconcile([]));
    const row: Row = { taps, attachS, failed, steadyS, fullS, removeS };
    if (taps <= PER_COMMAND_TAPS) row.perCommandS = await perCommand(ns, taps, `${sensor.pinDir}/progs`);
    return row;
  } finally {
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    await rm(pinRoot, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { writeDocs, args } = benchArgs();
  const sizes = (args.length ? args : ['100', '1000']).map(Number);
  const rows: Row[] = [];
  for (const n of sizes) {
    const r = await measure(n);
    rows.push(r);
    process.stdout.write(`${JSON.stringify(r)}\n`);
  }
  const s = (x: number) => `${x.toFixed(2)} s`;
  const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
  const lines = [
    `| taps | attach all (one \`tc -batch\`) | steady reconcile | full reconcile (every filter read again) | remove all | one \`tc\` process per command, as before |`,
    '|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.taps.toLocaleString('en-US')} | ${s(r.attachS)}${r.failed ? ` (${r.failed} failed)` : ''} | ${s(r.steadyS)} | ${s(r.fullS)} | ${s(r.removeS)} | ${r.perCommandS === undefined ? '-' : `${s(r.perCommandS)} (attach only)`} |`,
    ),
  ];
  const big = rows.find((r) => r.taps === 1000);
  if (big) {
    lines.push(
      '',
      `Targets for 1,000 taps: attach ≤ ${ATTACH_TARGET_S} s: ${verdict(big.attachS <= ATTACH_TARGET_S)} (${s(big.attachS)}); ` +
        `reconcile ≤ ${RECONCILE_TARGET_S} s: ${verdict(big.fullS <= RECONCILE_TARGET_S)} (full ${s(big.fullS)}, steady ${s(big.steadyS)}).`,
    );
  }
  const block = lines.join('\n');
  process.stdout.write(`\n${block}\n`);
  await maybeWriteBlock(writeDocs, 'attach', block, MEASUREMENTS);
  await maybeWriteBlock(writeDocs, 'attach-summary', block, README);
}

await main();
