import { clique, talk, vm, type Flow, type Scenario } from './traces.js';

/**
 * The generated half of the replay corpus (test/fixtures holds the half
 * recorded from the lab): six hours of 30 s periods each, groups of 4 split
 * across 2 sites at the start, each scenario with the phase a manager can get
 * wrong. Rates are messages per second each way.
 */
const HOURS6 = 720;

/** Groups of `size` consecutive VMs from `first`. */
const blocks = (first: number, count: number, size: number) => Array.from({ length: count }, (_, g) => Array.from({ length: size }, (_, i) => vm(first + g * size + i)));

/** A few random pairs at a low rate: the background every cluster has. */
function background(n: number, r: () => number, pairs = 6): Flow[] {
  return Array.from({ length: pairs }, () => talk(vm(Math.floor(r() * n)), vm(Math.floor(r() * n)), 0.5, 512)).flat();
}

export const CORPUS: Scenario[] = [
  {
    // The application is redeployed half-way: the same 24 VMs, other groups.
    name: 'groups that change',
    vms: 24,
    periods: HOURS6,
    flows: (k, r) => {
      const groups = k < HOURS6 / 2 ? blocks(0, 6, 4) : Array.from({ length: 6 }, (_, g) => [0, 6, 12, 18].map((o) => vm(g + o)));
      return [...groups.flatMap((g) => clique(g, 20, 2048)), ...background(24, r)];
    },
  },
  {
    // Two of four groups form a job that ends after two hours; its VMs stay, idle.
    name: 'a job that ends',
    vms: 16,
    periods: HOURS6,
    flows: (k, r) => [...blocks(0, k < 240 ? 4 : 2, 4).flatMap((g) => clique(g, 20, 2048)), ...background(16, r)],
  },
  {
    // Busy by day, nearly silent by night: a 3-hour cycle, twice.
    name: 'a diurnal pattern',
    vms: 24,
    periods: HOURS6,
    flows: (k, r) => {
      const day = Math.max(0, Math.sin((2 * Math.PI * k) / 360));
      return [...blocks(0, 6, 4).flatMap((g) => clique(g, 0.3 + 30 * day, 2048)), ...background(24, r)];
    },
  },
  {
    // vm20 sends bursts to two random VMs each period, louder than any group: chasing it moves VMs back and forth.
    name: 'a noisy neighbour',
    vms: 21,
    periods: HOURS6,
    flows: (_, r) => [
      ...blocks(0, 5, 4).flatMap((g) => clique(g, 10, 2048)),
      ...talk(vm(20), vm(Math.floor(r() * 20)), 40, 4096),
      ...talk(vm(20), vm(Math.floor(r() * 20)), 40, 4096),
      ...background(21, r),
    ],
  },
  {
    // Every VM reads from one file server in site a, which is not a VM; site a has room for 60 % of the VMs.
    name: 'a file server shared by all',
    vms: 24,
    periods: HOURS6,
    endpoints: { '10.0.9.5': 'a' },
    flows: (_, r) => [...blocks(0, 6, 4).flatMap((g) => clique(g, 15, 2048)), ...Array.from({ length: 24 }, (_, i) => talk(vm(i), '10.0.9.5', 5, 8192)).flat(), ...background(24, r)],
  },
];

/** The speed trace: a day of 2,880 periods of 1,000 VMs in groups of 5 (4,000 pairs a period), regrouped at noon, on 2 sites × 10 hosts. */
export function daySpeedScenario(): Scenario {
  const n = 1000;
  const morning = blocks(0, n / 5, 5);
  const afternoon = Array.from({ length: n / 5 }, (_, g) => [0, 1, 2, 3, 4].map((k) => vm((g + k * (n / 5)) % n)));
  return {
    name: 'a day of 1,000 VMs',
    vms: n,
    periods: 2880,
    hostsPerSite: 10,
    flows: (k, r) => [...(k < 1440 ? morning : afternoon).flatMap((g) => clique(g, 5, 2048)), ...background(n, r, 20)],
  };
}
