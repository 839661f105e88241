import type { Traffic } from '../analysis/index.js';
import type { Environment } from './env.js';
import { DEFAULT_BANDWIDTH_MBIT, DEFAULT_LATENCY_MS } from './fromCollector.js';

/**
 * When a group is worth keeping together, "relative to what moving would
 * save", in the planner's own terms (objective time, see problem.ts): split
 * over the environment's slowest inter-site link, its traffic would cost
 * messages x latency + bytes x 8 / bandwidth seconds of run time per second;
 * bringing it together costs at least one migration of its smallest member,
 * memory / bandwidth seconds. The group is significant when what it saves over
 * the payback horizon is at least that move. With `minBytes` (bytes/s inside)
 * the operator's floor replaces the rule.
 */
export function keepTogetherPays(
  env: Pick<Environment, 'links'>,
  memoryKiB: ReadonlyMap<string, number>,
  horizonSeconds: number,
  minBytes?: number,
): (members: readonly string[], inside: Traffic) => boolean {
  if (minBytes !== undefined) return (_, inside) => inside.bytes >= minBytes;
  const { latencyS, bps } = slowestLink(env);
  return (members, inside) => {
    const savedPerSecond = inside.messages * latencyS + (inside.bytes * 8) / bps;
    const move = (Math.min(...members.map((m) => memoryKiB.get(m) ?? 0)) * 1024 * 8) / bps;
    return savedPerSecond * horizonSeconds >= move;
  };
}

/** The highest latency and the lowest bandwidth among the links (the defaults when there is none). */
export function slowestLink(env: Pick<Environment, 'links'>): { latencyS: number; bps: number } {
  if (!env.links.length) return { latencyS: DEFAULT_LATENCY_MS / 1000, bps: DEFAULT_BANDWIDTH_MBIT * 1e6 };
  return { latencyS: Math.max(...env.links.map((l) => l.latencyMs)) / 1000, bps: Math.min(...env.links.map((l) => l.bandwidthMbit)) * 1e6 };
}
