import type { Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';
import { addVm } from '../../src/lab/vm.js';
import { hookEntry } from '../../src/manager/events.js';

/**
 * The sensor backends the lab tests run with: both by default, so that the
 * libpcap fallback is proven by the same tests as eBPF. VIRT_COHORT_TEST_SENSORS
 * (e.g. `pcap`) narrows it for a quick run of one backend.
 */
export function labSensors(): ('ebpf' | 'pcap')[] {
  const asked = (process.env.VIRT_COHORT_TEST_SENSORS ?? 'ebpf,pcap')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of asked) if (s !== 'ebpf' && s !== 'pcap') throw new Error(`VIRT_COHORT_TEST_SENSORS: '${s}' is not ebpf or pcap`);
  return asked as ('ebpf' | 'pcap')[];
}

/**
 * Four guests in two groups of two (vm1+vm2, vm3+vm4), one group split over
 * the sites and one inside site b, the groups sending different sizes: the
 * share of bytes that crosses sites (about 22 %) is then neither 0, 1 nor
 * the share of messages (50 %), so a command that counts otherwise shows.
 */
export const VIEW_GUESTS = [
  { vm: 'vm1', host: 'a1', index: 1, size: 256 },
  { vm: 'vm2', host: 'b1', index: 2, size: 256 },
  { vm: 'vm3', host: 'b1', index: 3, size: 1024 },
  { vm: 'vm4', host: 'b2', index: 4, size: 1024 },
] as const;

/** Starts VIEW_GUESTS on a 2 x 2 lab, `rate` datagrams/s to their group mate. */
export async function startViewGuests(lab: string, rate: number): Promise<void> {
  for (const g of VIEW_GUESTS) {
    await addVm(lab, { name: g.vm, host: g.host, index: g.index, pattern: 'groups:2', cluster: VIEW_GUESTS.length, rate, size: g.size, memoryMiB: 128, wait: true });
  }
}

/** When `host`'s hook said `domain` started (ms), read from the host's event stream as the manager reads it; undefined: no such event. */
export async function startedAt(redis: Redis, host: string, domain: string): Promise<number | undefined> {
  return (await redis.xrange(K.events(host), '-', '+')).map(([id, f]) => hookEntry(host, id, f)).find((e) => e?.domain === domain && e.operation === 'started')?.at;
}
