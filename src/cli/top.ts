import { Command, InvalidArgumentError } from 'commander';
import { bpfObject } from '../paths.js';
import { EbpfSensor } from '../sensor/ebpf.js';
import type { FlowCounts } from '../sensor/layout.js';
import { number, printJson } from './options.js';
import { table } from './table.js';

export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/virt-cohort';

interface Rate {
  vm: number;
  peer: string;
  rxPps: number;
  rxBps: number;
  txPps: number;
  txBps: number;
}

export function topCommand(): Command {
  return new Command('top')
    .description("live view of what this host's sensor counts: per VM and peer, packets/s and bytes/s each way")
    .option('--pin-root <dir>', 'where the sensor pins its maps', DEFAULT_PIN_ROOT)
    .option('--netns <name>', 'network namespace of the taps (a lab host: vc-LAB-HOST)')
    .option('--interval <s>', 'seconds between refreshes', seconds, 1)
    .option('--once', 'measure one interval, print, exit')
    .option('--json', 'print JSON (with --once, for scripts)')
    .action(async (o) => {
      const sensor = await EbpfSensor.open({
        pinRoot: o.pinRoot,
        load: false,
        object: bpfObject,
        ...(o.netns ? { netns: o.netns } : {}),
      });
      const names = new Map((await sensor.attached()).map((a) => [a.vm, a.tap]));
      let before = sensor.peek();
      let t0 = Date.now();
      for (;;) {
        await new Promise((r) => setTimeout(r, o.interval * 1000));
        const now = sensor.peek();
        const t1 = Date.now();
        const rates = rateOf(before, now, (t1 - t0) / 1000);
        if (o.json) printJson({ at: new Date(t1).toISOString(), intervalSeconds: (t1 - t0) / 1000, rates });
        else {
          if (!o.once) process.stdout.write('\x1b[2J\x1b[H');
          process.stdout.write(`virt-cohort top: ${sensor.pinDir}${o.netns ? ` in ${o.netns}` : ''}, ${new Date(t1).toLocaleTimeString()}\n\n`);
          process.stdout.write(
            `${table(
              ['VM', 'TAP', 'PEER', 'RX PKT/S', 'RX B/S', 'TX PKT/S', 'TX B/S'],
              rates.map((r) => [r.vm, names.get(r.vm) ?? '-', r.peer, r.rxPps.toFixed(0), r.rxBps.toFixed(0), r.txPps.toFixed(0), r.txBps.toFixed(0)]),
            )}\n`,
          );
        }
        if (o.once) return;
        before = now;
        t0 = t1;
      }
    });
}

function seconds(value: string): number {
  const n = number(value);
  if (n < 0.1 || n > 3600) throw new InvalidArgumentError(`'${value}' is not from 0.1 to 3600 seconds.`);
  return n;
}

/** Per (VM, peer) rates between two peeks; a count that fell was drained by the agent, so it counts from zero. */
export function rateOf(before: FlowCounts[], now: FlowCounts[], seconds: number): Rate[] {
  const key = (f: FlowCounts) => `${f.vm}|${f.dir}|${f.peer}`;
  const prev = new Map(before.map((f) => [key(f), f]));
  const rows = new Map<string, Rate>();
  for (const f of now) {
    const p = prev.get(key(f));
    const dp = p && p.packets <= f.packets ? f.packets - p.packets : f.packets;
    const db = p && p.bytes <= f.bytes ? f.bytes - p.bytes : f.bytes;
    const pair = `${f.vm}|${f.peer}`;
    const row = rows.get(pair) ?? { vm: f.vm, peer: f.peer, rxPps: 0, rxBps: 0, txPps: 0, txBps: 0 };
    if (f.dir === 'rx') {
      row.rxPps += dp / seconds;
      row.rxBps += db / seconds;
    } else {
      row.txPps += dp / seconds;
      row.txBps += db / seconds;
    }
    rows.set(pair, row);
  }
  return [...rows.values()].filter((r) => r.rxPps + r.txPps > 0).sort((a, b) => b.rxBps + b.txBps - (a.rxBps + a.txBps));
}
