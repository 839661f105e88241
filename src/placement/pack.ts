import { allows } from './constraints.js';
import type { Problem } from './problem.js';
import { hostingRate, oneOff, Placement, scratch, siteCosts } from './state.js';

/**
 * Places whole groups, biggest first: each goes to the site where it costs least given what is
 * already placed (its traffic to placed VMs and fixed endpoints, hosting, the migrations it needs
 * amortised over the horizon), among the sites that can hold all of it. Inside the site, members
 * stay on their own host when it is there and has room, else go to the fullest host that takes
 * them (best fit, so hosts stay free). A group no site can hold is split: what fits in the roomiest
 * site goes there, the rest is placed as a new group. Pinned VMs stay where they are.
 * Returns null when some VM fits nowhere.
 */
export function packGroups(p: Problem, labels: Int32Array): Placement | null {
  const pl = new Placement(
    p,
    Int32Array.from(p.origin, (h, v) => (p.movable[v] ? -1 : h)),
  );
  const byLabel = new Map<number, number[]>();
  for (let v = 0; v < p.nVm; v++) {
    if (!p.movable[v] && p.origin[v]! >= 0) continue;
    const list = byLabel.get(labels[v]!);
    if (list) list.push(v);
    else byLabel.set(labels[v]!, [v]);
  }
  const queue = [...byLabel.values()].sort((a, b) => b.length - a.length || a[0]! - b[0]!);
  const s = scratch(p);
  const extra = { mem: new Float64Array(p.nHost), cpu: new Float64Array(p.nHost) };
  const sitesHosts: number[][] = Array.from({ length: p.nSite }, () => []);
  for (let h = 0; h < p.nHost; h++) sitesHosts[p.hostSite[h]!]!.push(h);
  while (queue.length > 0) {
    const group = queue.shift()!;
    group.sort((a, b) => p.vmMem[b]! - p.vmMem[a]! || a - b);
    let bestCost = Infinity;
    let bestAssign: Int32Array | null = null;
    const costs = group.map((v) => siteCosts(pl, v, s).slice());
    for (let site = 0; site < p.nSite; site++) {
      const assign = fill(pl, group, sitesHosts[site]!, false, extra);
      if (!assign) continue;
      let c = 0;
      group.forEach((v, i) => {
        c += costs[i]![site]! + hostingRate(p, v, assign[i]!) + oneOff(p, v, assign[i]!) / p.horizonSeconds;
      });
      for (const h of new Set(assign)) if (pl.count[h] === 0) c += p.hostOpen[h]!;
      if (c < bestCost) {
        bestCost = c;
        bestAssign = assign;
      }
    }
    if (bestAssign) {
      group.forEach((v, i) => pl.move(v, bestAssign[i]!));
      continue;
    }
    // No site holds the whole group: fill the roomiest site, queue the rest as a group of its own.
    let roomiest = -1;
    let room = -1;
    for (let site = 0; site < p.nSite; site++) {
      let free = 0;
      for (const h of sitesHosts[site]!) if (p.destination[h]) free += p.memCap[h]! - pl.memUsed[h]!;
      if (free > room) {
        room = free;
        roomiest = site;
      }
    }
    const partial = fill(pl, group, sitesHosts[roomiest]!, true, extra)!;
    const rest = group.filter((_, i) => partial[i]! < 0);
    if (rest.length === group.length) {
      // Not even one VM fits in the roomiest site: try every host before giving up.
      const v = group[0]!;
      let h = 0;
      while (h < p.nHost && !pl.fits(v, h)) h++;
      if (h === p.nHost) return null;
      pl.move(v, h);
      queue.unshift(group.slice(1));
      continue;
    }
    group.forEach((v, i) => partial[i]! >= 0 && pl.move(v, partial[i]!));
    if (rest.length > 0) queue.unshift(rest);
  }
  return pl;
}

/** Tentative best-fit of `group` into `hosts` (all of one site); all-or-nothing unless `partial`, -1 for a VM left out. */
function fill(pl: Placement, group: readonly number[], hosts: readonly number[], partial: boolean, extra: { mem: Float64Array; cpu: Float64Array }): Int32Array | null {
  const p = pl.p;
  const { mem, cpu } = extra;
  const out = new Int32Array(group.length).fill(-1);
  const site = hosts.length > 0 ? p.hostSite[hosts[0]!]! : -1;
  // With rules, the group's tentative hosts count too: two members kept apart by host must not share one.
  const hostOf = p.rules ? pl.host.slice() : pl.host;
  const room = (v: number, h: number) =>
    p.destination[h] === 1 && pl.memUsed[h]! + mem[h]! + p.vmMem[v]! <= p.memCap[h]! * (1 + 1e-9) && pl.cpuUsed[h]! + cpu[h]! + p.vmCpu[v]! <= p.cpuCap[h]! * (1 + 1e-9) && allows(p, v, h, hostOf);
  let ok = true;
  for (let i = 0; i < group.length; i++) {
    const v = group[i]!;
    let pick = -1;
    const o = p.origin[v]!;
    if (o >= 0 && p.hostSite[o] === site && room(v, o)) pick = o;
    else {
      let fullest = -1;
      for (const h of hosts) {
        const used = pl.memUsed[h]! + mem[h]!;
        if (used > fullest && room(v, h)) {
          fullest = used;
          pick = h;
        }
      }
    }
    if (pick < 0) {
      ok = false;
      if (!partial) break;
      continue;
    }
    out[i] = pick;
    if (p.rules) hostOf[v] = pick;
    mem[pick]! += p.vmMem[v]!;
    cpu[pick]! += p.vmCpu[v]!;
  }
  for (const h of hosts) mem[h] = cpu[h] = 0;
  return ok || partial ? out : null;
}
