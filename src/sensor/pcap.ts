import capModule from 'cap';
import { UserError } from '../util/errors.js';
import { logger } from '../util/log.js';
import { arpSender, peerText, type FlowCounts } from './layout.js';
import { checkTapName, type Attachment, type Reading, type Sensor } from './sensor.js';

const log = logger('sensor');
const { Cap } = capModule;
const SNAPLEN = 65535;
const KERNEL_BUFFER = 8 * 1024 * 1024;

interface Capture {
  cap: InstanceType<typeof Cap>;
  vm: number;
  mac: Buffer;
}

/**
 * The fallback backend: one libpcap capture per tap, as the seed's Jpcap sensor
 * did, for hosts where the eBPF program cannot load. Every frame crosses into
 * user space, so it costs far more CPU (docs/measurements.md, the sensor), and a GSO
 * packet counts as one. The direction comes from the VM's MAC address.
 * Captures open in this process's network namespace.
 */
export class PcapSensor implements Sensor {
  readonly kind = 'pcap' as const;
  private captures = new Map<string, Capture>();
  private counts = new Map<string, FlowCounts>();

  static open(opts: { netns?: string } = {}): PcapSensor {
    if (opts.netns) {
      throw new UserError(`the pcap backend captures in its own network namespace: run it inside ${opts.netns} (nsenter --net=/run/netns/${opts.netns} ...)`);
    }
    return new PcapSensor();
  }

  async attach(tap: string, vm: number, mac?: string): Promise<void> {
    checkTapName(tap);
    if (!mac || !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac)) {
      throw new UserError(`the pcap backend needs the VM's MAC address to tell its directions apart (tap ${tap}, got '${mac ?? ''}')`);
    }
    await this.detach(tap);
    const cap = new Cap();
    const buffer = Buffer.alloc(SNAPLEN);
    try {
      cap.open(tap, '', KERNEL_BUFFER, buffer);
    } catch (err) {
      throw new UserError(`libpcap cannot capture on ${tap}: ${(err as Error).message}`);
    }
    cap.setMinBytes?.(0);
    const capture: Capture = { cap, vm, mac: Buffer.from(mac.replace(/:/g, ''), 'hex') };
    cap.on('packet', (nbytes) => this.count(capture, buffer, nbytes));
    this.captures.set(tap, capture);
    log.info({ tap, vm }, 'capturing');
  }

  async detach(tap: string): Promise<void> {
    this.captures.get(tap)?.cap.close();
    this.captures.delete(tap);
  }

  async attached(): Promise<Attachment[]> {
    return [...this.captures].map(([tap, c]) => ({ tap, vm: c.vm })).sort((a, b) => a.tap.localeCompare(b.tap));
  }

  /** Packets are counted on the event loop, so swapping the table here is atomic: nothing lost or doubled. */
  async read(): Promise<Reading> {
    const flows = [...this.counts.values()];
    this.counts = new Map();
    return { flows, overflow: { packets: 0, bytes: 0 }, unknownTap: 0, at: Date.now() };
  }

  async close(): Promise<void> {
    for (const tap of [...this.captures.keys()]) await this.detach(tap);
  }

  private count(c: Capture, frame: Buffer, nbytes: number): void {
    if (nbytes < 14) return;
    const dir = frame.subarray(6, 12).equals(c.mac) ? 'tx' : 'rx';
    const ethertype = frame.readUInt16BE(12);
    // Where the peer's address sits: the destination of what the VM sent, the source of what it received.
    const family = ethertype === 0x0800 && nbytes >= 34 ? 4 : ethertype === 0x86dd && nbytes >= 54 ? 6 : 0;
    const at = family === 4 ? (dir === 'tx' ? 30 : 26) : dir === 'tx' ? 38 : 22;
    const peer = peerText(frame, at, family, ethertype);
    // As in the eBPF program, an ARP frame is also keyed by its sender's IPv4 address.
    const sender = family === 0 && nbytes >= 42 && frame[18] === 6 && frame[19] === 4 ? arpSender(frame, 28, ethertype) : undefined;
    const key = `${c.vm}|${dir}|${peer}|${sender ?? ''}`;
    const f = this.counts.get(key);
    if (f) {
      f.packets++;
      f.bytes += nbytes;
    } else {
      const flow: FlowCounts = { vm: c.vm, dir, peer, family, ethertype, packets: 1, bytes: nbytes };
      if (sender) flow.arpSender = sender;
      this.counts.set(key, flow);
    }
  }
}
