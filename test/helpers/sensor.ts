import type { FlowCounts } from '../../src/sensor/layout.js';
import type { Attachment, ReconcileResult, Reading, Sensor } from '../../src/sensor/sensor.js';

/**
 * A sensor without a kernel, behind the agent's Sensor interface: taps are
 * attached in memory, and a test says what was counted on a tap with
 * `count()`. As the eBPF sensor does, a frame on a tap that is not attached is
 * counted only as `unknownTap`, and each read hands back what was counted
 * since the one before, once.
 */
export class FakeSensor implements Sensor {
  readonly kind = 'ebpf' as const;
  readonly capacity = 0;
  private taps = new Map<string, { vm: number; mac?: string }>();
  private flows = new Map<string, FlowCounts>();
  private unknownTap = 0;
  /** Every reconcile's wanted taps, in order. */
  readonly reconciles: string[][] = [];
  reads = 0;
  closed = false;

  /** `packets` frames of `bytes` in all, sent (tx) or received (rx) by the VM on `tap`, to or from the address `peer`. */
  count(tap: string, dir: 'rx' | 'tx', peer: string, packets: number, bytes: number): void {
    const t = this.taps.get(tap);
    if (!t) {
      this.unknownTap += packets;
      return;
    }
    const key = `${t.vm}/${dir}/${peer}`;
    const f = this.flows.get(key);
    if (f) {
      f.packets += packets;
      f.bytes += bytes;
    } else {
      this.flows.set(key, { vm: t.vm, dir, peer, family: peer.includes(':') ? 6 : 4, ethertype: peer.includes(':') ? 0x86dd : 0x0800, packets, bytes });
    }
  }

  async attach(tap: string, vm: number, mac?: string): Promise<void> {
    this.taps.set(tap, mac ? { vm, mac } : { vm });
  }

  async detach(tap: string): Promise<void> {
    this.taps.delete(tap);
  }

  async attached(): Promise<Attachment[]> {
    return [...this.taps].map(([tap, t]) => ({ tap, vm: t.vm })).sort((a, b) => a.tap.localeCompare(b.tap));
  }

  async reconcile(want: (Attachment & { mac?: string })[]): Promise<ReconcileResult> {
    this.reconciles.push(want.map((w) => w.tap).sort());
    const r: ReconcileResult = { attached: [], removed: [], failed: [] };
    for (const w of want) {
      if (this.taps.get(w.tap)?.vm === w.vm) continue;
      await this.attach(w.tap, w.vm, w.mac);
      r.attached.push(w.tap);
    }
    for (const tap of [...this.taps.keys()]) {
      if (want.some((w) => w.tap === tap)) continue;
      await this.detach(tap);
      r.removed.push(tap);
    }
    return r;
  }

  async read(): Promise<Reading> {
    this.reads++;
    const out: Reading = { flows: [...this.flows.values()], overflow: { packets: 0, bytes: 0 }, unknownTap: this.unknownTap, at: Date.now() };
    this.flows = new Map();
    this.unknownTap = 0;
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
