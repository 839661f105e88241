import { logger } from '../util/log.js';
import { EbpfSensor } from './ebpf.js';
import { PCAP_COST, PcapSensor } from './pcap.js';
import type { Sensor } from './sensor.js';

const log = logger('sensor');

/** ebpf, pcap, or auto: eBPF, and libpcap when eBPF cannot be used here. */
export type SensorBackend = 'auto' | 'ebpf' | 'pcap';
export const SENSOR_BACKENDS: readonly SensorBackend[] = ['auto', 'ebpf', 'pcap'];

export interface SensorOptions {
  backend: SensorBackend;
  pinRoot: string;
  object: string;
  netns?: string;
  /** Where the libpcap backend keeps the counts it has not handed over yet (the agent's state directory). */
  pcapCheckpoint?: string;
}

export async function openSensor(opts: SensorOptions): Promise<Sensor> {
  const { backend, pcapCheckpoint, ...ebpf } = opts;
  const pcap = { ...(opts.netns ? { netns: opts.netns } : {}), ...(pcapCheckpoint ? { checkpoint: pcapCheckpoint } : {}) };
  if (backend === 'pcap') return PcapSensor.open(pcap);
  if (backend === 'ebpf') return EbpfSensor.open(ebpf);
  try {
    return await EbpfSensor.open(ebpf);
  } catch (err) {
    const sensor = PcapSensor.open(pcap);
    sensor.fallbackReason = (err as Error).message;
    log.warn(
      { err },
      `eBPF sensor unavailable, so this agent counts with libpcap: ${(err as Error).message}. ${PCAP_COST} ` +
        'To count in the kernel, fix the cause above and restart the agent; agent.sensor: ebpf makes this an error instead of a fallback.',
    );
    return sensor;
  }
}

export type { Sensor };
