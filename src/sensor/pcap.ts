import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pcapAddon } from '../paths.js';
import { UserError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { logger } from '../util/log.js';
import { count, flowsOf, type Capture } from './frames.js';
import { mergeFlows, type FlowCounts } from './layout.js';
import { checkTapName, type Attachment, type Reading, type ReconcileResult, type Sensor } from './sensor.js';

const log = logger('sensor');
/**
 * Snap length: the kernel copies only this much of each frame. Ethernet, the
 * largest IPv4 header and the largest TCP header fit (an IPv6 TCP header with
 * all options too); the wire length comes with every frame.
 */
const SNAPLEN = 14 + 60 + 60;
/** The capture ring, per tap: frames wait there between two polls. */
const KERNEL_BUFFER = 8 * 1024 * 1024;
/** How often the rings are emptied; the ring holds POLL_MS of ~50,000 frames/s per tap. */
const POLL_MS = 100;
const BATCH = 4096;
/** How often at most the counts not yet read are written to the checkpoint file. */
const CHECKPOINT_MS = 250;

/** The addon's interface (src/sensor/native/pcap.c). */
interface Native {
  RECORD: number;
  open(device: string, snaplen: number, bufferBytes: number): object;
  read(handle: object, out: Buffer): number;
  stats(handle: object): { received?: number; dropped?: number };
  close(handle: object): void;
}

let native: Native | undefined;
function addon(): Native {
  if (!native) {
    try {
      native = createRequire(import.meta.url)(pcapAddon) as Native;
    } catch (err) {
      throw new UserError(`the libpcap reader ${pcapAddon} cannot be loaded (${(err as Error).message.split('\n')[0]}): run 'npm run setup' (it builds src/sensor/native), or reinstall the package`);
    }
  }
  return native;
}

/** What libpcap costs, said wherever it is chosen (agent log, doctor); measured by test/bench/sensor.ts. */
export const PCAP_COST =
  "libpcap copies every frame's headers out of the kernel and counts them in the agent: on the sensor bench it cost " +
  '3 % of small-packet throughput where eBPF cost 0.4 %, and 20 % of TCP bulk where eBPF cost 8 % (docs/measurements.md, "The sensor"); ' +
  'it counts nothing while no agent runs, where eBPF goes on counting in the kernel.';

/**
 * The fallback backend: one libpcap capture per tap, as the seed's Jpcap sensor
 * did, for hosts where the eBPF program cannot load. Every frame crosses into
 * user space, so it costs far more CPU (PCAP_COST). The direction comes from
 * the VM's MAC address. Messages are wire packets as in eBPF: a GSO/GRO
 * super-packet counts as the segments it stands for (segments()).
 * Captures open in this process's network namespace.
 */
export class PcapSensor implements Sensor {
  readonly kind = 'pcap' as const;
  readonly capacity = 0;
  /** Why `auto` fell back to this backend, when it did. */
  fallbackReason?: string;
  private captures = new Map<string, Capture>();
  private done: FlowCounts[] = [];
  private poller?: NodeJS.Timeout;
  private readonly records = Buffer.alloc(BATCH * addon().RECORD);
  private lastCheckpoint = 0;
  private dirty = false;

  private constructor(private readonly checkpoint?: string) {}

  /**
   * `checkpoint`: a file where the counts not yet read are kept, rewritten a
   * few times a second, so that an agent killed between two reads loses at
   * most CHECKPOINT_MS of what it had counted (the eBPF backend keeps its
   * counts in the kernel instead). What the file holds is read back here.
   */
  static open(opts: { netns?: string; checkpoint?: string } = {}): PcapSensor {
    if (opts.netns) {
      throw new UserError(`the pcap backend captures in its own network namespace: run it inside ${opts.netns} (nsenter --net=/run/netns/${opts.netns} ...)`);
    }
    const sensor = new PcapSensor(opts.checkpoint);
    if (opts.checkpoint) {
      try {
        sensor.done = JSON.parse(readFileSync(opts.checkpoint, 'utf8')) as FlowCounts[];
        if (sensor.done.length) log.info({ flows: sensor.done.length, file: opts.checkpoint }, 'counts of an agent that stopped before reading them are kept');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ err, file: opts.checkpoint }, 'unreadable libpcap checkpoint: ignored');
      }
    }
    return sensor;
  }

  async attach(tap: string, vm: number, mac?: string): Promise<void> {
    checkTapName(tap);
    if (!mac || !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac)) {
      throw new UserError(`the pcap backend needs the VM's MAC address to tell its directions apart (tap ${tap}, got '${mac ?? ''}')`);
    }
    await this.detach(tap);
    const { mtu, ifindex } = await linkInfo(tap);
    this.open(tap, vm, mac, mtu, ifindex);
    log.info({ tap, vm, mtu }, 'capturing');
  }

  private open(tap: string, vm: number, mac: string, mtu: number, ifindex: number): void {
    let handle: object;
    try {
      handle = addon().open(tap, SNAPLEN, KERNEL_BUFFER);
    } catch (err) {
      throw new UserError(`libpcap cannot capture on ${tap}: ${(err as Error).message}`);
    }
    const m = Buffer.from(mac.replace(/:/g, ''), 'hex');
    const c: Capture = { handle, tap, vm, dropped: 0, mac4: m.readUInt32BE(0), mac2: m.readUInt16BE(4), mtu, ifindex, mac, v4: new Map(), other: new Map(), mss: new Map() };
    this.captures.set(tap, c);
    this.poller ??= setInterval(() => this.poll(), POLL_MS).unref();
  }

  async detach(tap: string): Promise<void> {
    const c = this.captures.get(tap);
    if (!c) return;
    this.drain(c);
    this.closeCapture(c);
  }

  /** Counts what every ring holds, and keeps the counts on disk now and then. */
  private poll(): void {
    for (const c of [...this.captures.values()]) this.drain(c);
    if (this.checkpoint && this.dirty && Date.now() - this.lastCheckpoint >= CHECKPOINT_MS) this.save();
  }

  /** Written to a temporary file and renamed: a kill at any moment leaves the old file or the new one. */
  private save(flows?: FlowCounts[]): void {
    if (!this.checkpoint) return;
    const all = flows ?? mergeFlows([...this.done, ...[...this.captures.values()].flatMap((c) => flowsOf(c, true))]);
    try {
      writeFileSync(`${this.checkpoint}.tmp`, JSON.stringify(all));
      renameSync(`${this.checkpoint}.tmp`, this.checkpoint);
      this.lastCheckpoint = Date.now();
      this.dirty = false;
    } catch (err) {
      log.warn({ err, file: this.checkpoint }, 'cannot keep the libpcap counts on disk; an agent killed now would lose them');
    }
  }

  private drain(c: Capture): void {
    const { RECORD } = addon();
    try {
      for (;;) {
        const n = addon().read(c.handle, this.records);
        if (n) this.dirty = true;
        for (let i = 0; i < n; i++) {
          const at = i * RECORD;
          count(c, this.records, at + 8, this.records.readUInt16LE(at + 4), this.records.readUInt32LE(at));
        }
        if (n < BATCH) break;
      }
      const dropped = addon().stats(c.handle).dropped ?? 0;
      if (dropped > c.dropped) log.error({ tap: c.tap, vm: c.vm, dropped: dropped - c.dropped }, 'libpcap dropped frames: its ring was full; these were not counted');
      c.dropped = dropped;
    } catch (err) {
      // The tap went away (the VM stopped or left): what was read is kept.
      this.closeCapture(c);
      log.info({ tap: c.tap, vm: c.vm, why: (err as Error).message }, 'capture ended');
      void this.reopen(c);
    }
  }

  /** A capture that failed on a tap that is still there (it went down, or the socket failed) is opened again at once, not at the next reconcile. */
  private async reopen(c: Capture): Promise<void> {
    const now = (await links().catch(() => new Map<string, LinkInfo>())).get(c.tap);
    if (now?.ifindex !== c.ifindex || this.captures.has(c.tap)) return;
    try {
      this.open(c.tap, c.vm, c.mac, now.mtu, now.ifindex);
      log.warn({ tap: c.tap, vm: c.vm }, 'the tap is still there: capturing again');
    } catch (err) {
      log.warn({ tap: c.tap, vm: c.vm, why: (err as Error).message }, 'the tap is still there but cannot be captured again now; the next reconcile tries');
    }
  }

  private closeCapture(c: Capture): void {
    addon().close(c.handle);
    // What it counted stays for the next read (and on disk, for the next agent if this one stops now).
    this.done.push(...flowsOf(c));
    if (this.captures.get(c.tap) === c) this.captures.delete(c.tap);
    this.save();
    if (!this.captures.size && this.poller) {
      clearInterval(this.poller);
      this.poller = undefined;
    }
  }

  async attached(): Promise<Attachment[]> {
    return [...this.captures].map(([tap, c]) => ({ tap, vm: c.vm })).sort((a, b) => a.tap.localeCompare(b.tap));
  }

  async reconcile(want: (Attachment & { mac?: string })[]): Promise<ReconcileResult> {
    const r: ReconcileResult = { attached: [], removed: [], failed: [] };
    const wanted = new Set(want.map((w) => w.tap));
    const now = await links();
    for (const w of want) {
      const c = this.captures.get(w.tap);
      // A tap deleted and made again under the same name is a new interface: the old capture sees nothing of it.
      if (c?.vm === w.vm && now.get(w.tap)?.ifindex === c.ifindex) continue;
      try {
        await this.attach(w.tap, w.vm, w.mac);
        r.attached.push(w.tap);
      } catch (err) {
        r.failed.push({ tap: w.tap, error: (err as Error).message });
      }
    }
    for (const tap of [...this.captures.keys()]) {
      if (wanted.has(tap)) continue;
      await this.detach(tap);
      r.removed.push(tap);
    }
    return r;
  }

  /** Packets are counted on the event loop, so swapping the tables here is atomic: nothing lost or doubled. */
  async read(): Promise<Reading> {
    this.poll();
    const flows = this.done;
    this.done = [];
    for (const c of this.captures.values()) flows.push(...flowsOf(c));
    this.save([]);
    return { flows: mergeFlows(flows), overflow: { packets: 0, bytes: 0 }, unknownTap: 0, at: Date.now() };
  }

  async close(): Promise<void> {
    for (const tap of [...this.captures.keys()]) await this.detach(tap);
  }
}

interface LinkInfo {
  mtu: number;
  ifindex: number;
}

/** Every interface of this network namespace (netlink, so right inside `nsenter --net`, where /sys is the host's). */
async function links(): Promise<Map<string, LinkInfo>> {
  const all = JSON.parse(await run('ip', ['-j', 'link', 'show'])) as { ifname: string; mtu?: number; ifindex: number }[];
  return new Map(all.map((l) => [l.ifname, { mtu: l.mtu ?? 1500, ifindex: l.ifindex }]));
}

async function linkInfo(tap: string): Promise<LinkInfo> {
  try {
    const [link] = JSON.parse(await run('ip', ['-j', 'link', 'show', 'dev', tap])) as { mtu?: number; ifindex?: number }[];
    return { mtu: link?.mtu ?? 1500, ifindex: link?.ifindex ?? -1 };
  } catch (err) {
    throw new UserError(`no interface '${tap}' here (${(err as Error).message.split('\n').pop()}): is the VM running?`);
  }
}
