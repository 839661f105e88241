import type { Applied, ClusterFile } from '../placement/cluster.js';
import type { InitialPlacement } from '../placement/initial.js';
import { UserError } from '../util/errors.js';
import { requireLab } from './lab.js';
import { peersFor } from '../placement/patterns.js';
import { domainName, MAX_VMS } from './topology.js';
import { addVm } from './vm.js';

/**
 * A placed cluster as lab guests (`virt-cohort place --apply` with a lab and
 * no template): each gets the next free lab index (its address), and the
 * pattern is turned into the explicit peer list of those indexes, so a second
 * cluster in a lab talks only within itself. The guests send the cluster's
 * messagesPerSecond and bytesPerMessage, which must be set.
 */
export async function startLabGuests(labName: string, placed: InitialPlacement, cluster: ClusterFile): Promise<Applied[]> {
  const lab = await requireLab(labName);
  for (const v of cluster.vms) {
    if (lab.vms[v.name]) throw new UserError(`VM '${v.name}' already exists in lab '${lab.name}': rename it in the cluster file`);
  }
  const used = new Set(Object.values(lab.vms).map((v) => v.index));
  const index: number[] = [];
  for (let i = 1; i <= MAX_VMS && index.length < cluster.vms.length; i++) if (!used.has(i)) index.push(i);
  if (index.length < cluster.vms.length) throw new UserError(`lab '${lab.name}' has room for ${index.length} more VM(s) (at most ${MAX_VMS}): remove some or use a smaller cluster`);
  const n = cluster.vms.length;
  const hostOf = new Map(placed.assignment.map((a) => [a.vm, a.host] as const));
  const done: Applied[] = [];
  for (let i = 0; i < n; i++) {
    const v = cluster.vms[i]!;
    const peers = cluster.pattern ? peersFor(cluster.pattern, i + 1, n).map((j) => index[j - 1]!) : [];
    const added = await addVm(lab.name, {
      name: v.name,
      host: hostOf.get(v.name)!,
      index: index[i]!,
      pattern: peers.length ? `peers:${peers.join(',')}` : 'idle',
      cluster: n,
      rate: Math.round(cluster.messagesPerSecond!),
      size: Math.round(cluster.bytesPerMessage!),
      memoryMiB: v.memoryMiB,
      wait: true,
    });
    done.push({ vm: v.name, host: added.host, domain: domainName(lab, v.name), mac: added.mac });
  }
  return done;
}
