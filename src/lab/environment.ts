import { hosts, siteName, type LabSettings } from './topology.js';

/**
 * The environment file (src/placement/env.ts) of a lab, for `virt-cohort plan --env`: its sites,
 * its hosts, and between every two sites the link the lab shapes. The latency is the one-way delay
 * the wan router adds to every packet that crosses sites, which is what a message between two VMs
 * in different sites waits; the bandwidth is the lab's rate. Capacity is left to the agents (every
 * lab host reports the machine's), prices are 0: a lab costs nothing. Every lab host reports all the
 * machine's CPUs, often 2, while its guests are small traffic generators that mostly sleep: without
 * overcommit a 2-CPU machine could place 2 guests per host, far fewer than the lab runs.
 */
export const LAB_CPU_OVERCOMMIT = 16;

export interface LabEnvironment {
  sites: Record<string, Record<string, never>>;
  hosts: Record<string, { site: string }>;
  links: { sites: [string, string]; latencyMs: number; bandwidthMbit: number; transferPricePerGB: number }[];
  cpuOvercommit: number;
}

export function labEnvironment(lab: LabSettings): LabEnvironment {
  const sites = Array.from({ length: lab.sites }, (_, i) => siteName(i + 1));
  return {
    sites: Object.fromEntries(sites.map((s) => [s, {}])),
    hosts: Object.fromEntries(hosts(lab).map((h) => [h.name, { site: h.site }])),
    links: sites.flatMap((a, i) =>
      sites.slice(i + 1).map((b) => ({
        sites: [a, b] as [string, string],
        latencyMs: lab.delayMs,
        bandwidthMbit: lab.rateMbit,
        transferPricePerGB: 0,
      })),
    ),
    cpuOvercommit: LAB_CPU_OVERCOMMIT,
  };
}
