import { UserError } from '../util/errors.js';

/**
 * Traffic patterns of a virtual cluster, after the seed's NAS benchmark shapes:
 * the traffic initial placement expects of a new cluster, and what the lab's
 * guests send. VM i of a cluster of n VMs (1-based) sends to the peers returned
 * here; a lab guest's generator sends `rate` datagrams/s to each, so every
 * count is known.
 */
export const PATTERNS = ['idle', 'pairs', 'ring', 'groups:K', 'all', 'peers:I,J,...'] as const;

export function peersFor(pattern: string, i: number, n: number): number[] {
  if (!Number.isInteger(n) || n < 1) throw new UserError(`cluster size must be a positive integer (got ${n})`);
  if (!Number.isInteger(i) || i < 1) throw new UserError(`VM index must be a positive integer (got ${i})`);
  const others = (list: number[]) => [...new Set(list)].filter((j) => j !== i && j >= 1).sort((a, b) => a - b);
  if (pattern === 'idle') return [];
  if (i > n && !pattern.startsWith('peers:')) {
    throw new UserError(`VM index ${i} is outside its cluster of ${n} VMs: make the cluster at least ${i} VMs`);
  }
  if (pattern === 'pairs') {
    const partner = i % 2 === 1 ? i + 1 : i - 1;
    return partner <= n ? [partner] : [];
  }
  if (pattern === 'ring') return n < 2 ? [] : others([((i - 2 + n) % n) + 1, (i % n) + 1]);
  if (pattern === 'all') return others(Array.from({ length: n }, (_, k) => k + 1));
  const groups = /^groups:(\d+)$/.exec(pattern);
  if (groups) {
    const k = Number(groups[1]);
    if (k < 1 || k > n) throw new UserError(`groups:${k} needs between 1 and ${n} groups for a cluster of ${n} VMs`);
    const size = Math.ceil(n / k);
    const g = Math.floor((i - 1) / size);
    return others(Array.from({ length: n }, (_, j) => j + 1).filter((j) => Math.floor((j - 1) / size) === g));
  }
  const explicit = /^peers:(\d+(?:,\d+)*)$/.exec(pattern);
  if (explicit) return others(explicit[1]!.split(',').map(Number));
  throw new UserError(`unknown traffic pattern '${pattern}': use one of ${PATTERNS.join(', ')} (e.g. groups:2)`);
}
