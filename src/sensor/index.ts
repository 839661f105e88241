import { logger } from '../util/log.js';
import { EbpfSensor } from './ebpf.js';
import { PcapSensor } from './pcap.js';
import type { Sensor } from './sensor.js';

const log = logger('sensor');

export interface SensorOptions {
  /** ebpf, pcap, or auto: eBPF, and libpcap when eBPF cannot be used here. */
  backend: 'auto' | 'ebpf' | 'pcap';
  pinRoot: string;
  object: string;
  netns?: string;
}

export async function openSensor(opts: SensorOptions): Promise<Sensor> {
  const { backend, ...ebpf } = opts;
  if (backend === 'pcap') return PcapSensor.open(opts.netns ? { netns: opts.netns } : {});
  if (backend === 'ebpf') return EbpfSensor.open(ebpf);
  try {
    return await EbpfSensor.open(ebpf);
  } catch (err) {
    log.warn({ err }, `eBPF sensor unavailable (${(err as Error).message}); counting with libpcap instead, at a higher CPU cost`);
    return PcapSensor.open(opts.netns ? { netns: opts.netns } : {});
  }
}

export type { Sensor };
