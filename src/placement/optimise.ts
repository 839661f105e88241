import { cohesiveLabels } from '../analysis/cohesive.js';
import { seedGreedy } from '../analysis/greedy.js';
import { louvain } from '../analysis/louvain.js';
import { refineUnderCapacity, vmCsr, type Capacity } from '../analysis/refine.js';
import type { TrafficMeasure } from '../analysis/graph.js';
import type { PLAN_METHODS } from '../config/schema.js';
import { bisectLabels } from './bisect.js';
import { mergeTogether } from './constraints.js';
import { packGroups } from './pack.js';
import { siteRoom, type Problem } from './problem.js';
import { improve, type ImproveOptions } from './search.js';
import { Placement, score, type Score } from './state.js';

/** Which groups seed the search: ours (cohesive, with every other start beside it), or only the seed's greedy groups or Louvain's (to compare them). */
export type PlanMethod = (typeof PLAN_METHODS)[number];

export interface Candidate {
  name: 'current' | 'seed-greedy' | 'cohesive' | 'bisection' | 'louvain';
  placement: Placement;
  score: Score;
}

/**
 * The planner's best placement: up to four starts, each polished by local search; the lowest
 * amortised objective wins.
 * - The current placement: favours few moves.
 * - Cohesive groups packed whole (Louvain communities merged where no weak link parts them; one too
 *   big for any site split along its tree, cheapest split first): moves of whole groups that
 *   single-VM steps cannot reach.
 * - The seed's greedy groups packed: the result is never worse than the seed's algorithm followed
 *   by the same polishing.
 * - Only when groups are coarse beside a site (one holds a quarter of a site's room or more: a
 *   tree, a stencil, a ladder): the multilevel bisection (bisect.ts) cuts the graph into one part
 *   per site, sized to the sites' room, where packing whole groups cuts badly.
 * `method` 'seed' or 'louvain' keeps the current placement and that one start only: the
 * strategies `virt-cohort replay` compares ours with.
 */
export function optimise(p: Problem, measure: TrafficMeasure, opts: ImproveOptions = {}, method: PlanMethod = 'cohesive'): Candidate {
  const cands: Candidate[] = [];
  const add = (name: Candidate['name'], pl: Placement | null) => {
    if (!pl) return;
    improve(pl, opts);
    cands.push({ name, placement: pl, score: score(pl) });
  };
  if (p.origin.every((h) => h >= 0)) add('current', new Placement(p, p.origin.slice()));
  if (method === 'seed') add('seed-greedy', packGroups(p, seedGreedy(p.graph, { measure })));
  if (method === 'louvain') add('louvain', packGroups(p, louvainLabels(p, measure)));
  if (method !== 'cohesive') return best(p, cands);
  // Cohesive groups (Louvain communities merged where no weak link parts them); one too big for any
  // site is split along its tree, cheapest split first.
  const room = largestSiteRoom(p);
  const cohesive = cohesiveLabels(p.graph, measure, (nodes) => fits(p, nodes, room));
  add('cohesive', packGroups(p, mergeTogether(p, cohesive.labels)));
  add('seed-greedy', packGroups(p, mergeTogether(p, seedGreedy(p.graph, { measure }))));
  // Only where groups are coarse beside a site (one holds a quarter of a site's room or more: a tree,
  // a stencil, a ladder), so packing them whole may cut badly: one part per site instead. Last, so it
  // wins only when strictly better: the other starts' results stay as they were on ties.
  const halves = cohesive.split || largestGroup(p, cohesive.labels) * 4 >= room.memoryKiB ? bisectLabels(p, measure) : null;
  if (halves) add('bisection', packGroups(p, mergeTogether(p, halves)));
  return best(p, cands);
}

/** The lowest amortised objective; on a tie the earlier start. */
function best(p: Problem, cands: Candidate[]): Candidate {
  if (cands.length === 0) return { name: 'current', placement: new Placement(p, p.origin.slice()), score: score(new Placement(p, p.origin.slice())) };
  return cands.reduce((a, b) => (b.score.amortised < a.score.amortised - 1e-12 * Math.abs(a.score.amortised) ? b : a));
}

/** Louvain communities split until each fits the largest site's room. */
export function louvainLabels(p: Problem, measure: TrafficMeasure): Int32Array {
  return refineUnderCapacity(p.graph, measure, louvain(vmCsr(p.graph, measure)), demandOf(p), largestSiteRoom(p));
}

function demandOf(p: Problem): Capacity[] {
  return Array.from({ length: p.nVm }, (_, v) => ({ memoryKiB: p.vmMem[v]!, vcpus: p.vmCpu[v]! }));
}

/** The memory of the largest group of `labels`. */
function largestGroup(p: Problem, labels: Int32Array): number {
  const mem = new Map<number, number>();
  for (let v = 0; v < p.nVm; v++) mem.set(labels[v]!, (mem.get(labels[v]!) ?? 0) + p.vmMem[v]!);
  return Math.max(0, ...mem.values());
}

function fits(p: Problem, nodes: number[], room: Capacity): boolean {
  let mem = 0;
  let cpu = 0;
  for (const v of nodes) {
    mem += p.vmMem[v]!;
    cpu += p.vmCpu[v]!;
  }
  return mem <= room.memoryKiB && cpu <= room.vcpus;
}

/** The memory and vCPUs of the site with the most memory to take VMs. */
function largestSiteRoom(p: Problem): Capacity {
  const { mem, cpu } = siteRoom(p);
  let best = 0;
  for (let s = 1; s < p.nSite; s++) if (mem[s]! > mem[best]!) best = s;
  return { memoryKiB: mem[best]!, vcpus: cpu[best]! };
}
