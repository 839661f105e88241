/**
 * Helpers the placement benches share (placement.ts, metis.ts): a seeded random generator,
 * a random initial placement and a placement Problem built from collector rows.
 */
import { buildGraph, type PairTraffic } from '../../src/analysis/graph.js';
import type { Environment } from '../../src/placement/env.js';
import type { VmInfo } from '../../src/placement/live.js';
import { buildProblem, type Problem } from '../../src/placement/problem.js';
import { rng } from '../helpers/traces.js';

/** 1 GiB in KiB: every bench VM has this much memory. */
export const GiB = 1048576;

export const vmName = (i: number) => `vm${i}`;

export { rng };

/** Where the VMs start: random hosts with room, as if created with no knowledge of the traffic (1 GiB / 1 vCPU each). */
export function randomStart(n: number, env: Environment, seed: number): VmInfo[] {
  const r = rng(seed);
  const room = new Map(env.hosts.map((h) => [h.name, h.memoryKiB!]));
  return Array.from({ length: n }, (_, i) => {
    const free = env.hosts.filter((h) => room.get(h.name)! >= GiB);
    const h = free[Math.floor(r() * free.length)]!;
    room.set(h.name, room.get(h.name)! - GiB);
    return { name: vmName(i), host: h.name, site: h.site, memoryKiB: GiB, vcpus: 1 };
  });
}

/** The time-objective Problem for these rows with the VMs where `vms` says. */
export function problemFor(rows: readonly PairTraffic[], env: Environment, vms: readonly VmInfo[], horizon: number): Problem {
  const g = buildGraph(
    rows,
    vms.map((v) => v.name),
  );
  return buildProblem(
    g,
    vms.map((v) => ({ ...v })),
    env,
    'time',
    horizon,
    Date.now(),
  );
}
