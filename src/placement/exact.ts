import type { Problem } from './problem.js';
import { Placement, score, type Score } from './state.js';

/**
 * The exact optimum of the amortised objective by depth-first branch and bound over every
 * VM → host assignment that respects capacity; for the benchmark's small instances (≤ 12 VMs).
 * Hosts of one site with identical capacity, price and speed are interchangeable, so an empty
 * one is only tried once. The bound is the edge, host-opening and migration cost fixed so far;
 * hosting is left out of it, which keeps it valid while hosting rates are ≥ 0 (prices ≥ 0,
 * speeds ≤ 1: the benchmark's case). The leaf value is the full score, so the result is exact there.
 */
export function exactOptimum(p: Problem, limitVms = 12): { placement: Placement; score: Score } {
  if (p.nVm > limitVms) throw new Error(`exact search is for at most ${limitVms} VMs`);
  const g = p.graph;
  const S = p.nSite;
  const H = p.horizonSeconds;
  const pl = new Placement(
    p,
    Int32Array.from(p.origin, (h, v) => (p.movable[v] ? -1 : h)),
  );
  // Visit VMs by descending degree: heavy edges get fixed early and the bound bites sooner.
  const order = Array.from({ length: p.nVm }, (_, v) => v)
    .filter((v) => p.movable[v])
    .sort((a, b) => g.offsets[b + 1]! - g.offsets[b]! - (g.offsets[a + 1]! - g.offsets[a]!));
  const twin = new Int32Array(p.nHost).fill(-1);
  for (let h = 0; h < p.nHost; h++) {
    for (let k = 0; k < h; k++) {
      if (
        twin[k] === -1 &&
        p.hostSite[k] === p.hostSite[h] &&
        p.memCap[k] === p.memCap[h] &&
        p.cpuCap[k] === p.cpuCap[h] &&
        p.hostFixed[k] === p.hostFixed[h] &&
        p.hostPerCpu[k] === p.hostPerCpu[h] &&
        p.hostPerGiB[k] === p.hostPerGiB[h] &&
        p.destination[k] === p.destination[h]
      ) {
        twin[h] = k;
        break;
      }
    }
  }
  let best = Infinity;
  let bestHost = pl.host.slice();
  const partial = (v: number, h: number): number => {
    let c = 0;
    const s = p.hostSite[h]!;
    for (let i = g.offsets[v]!; i < g.offsets[v + 1]!; i++) {
      const t = pl.siteOf(g.neighbours[i]!);
      if (t < 0) continue;
      const e = g.slotEdge[i]!;
      c += g.edgeMessages[e]! * p.msgCoef[s * S + t]! + g.edgeBytes[e]! * p.byteCoef[s * S + t]!;
    }
    return c;
  };
  const rec = (k: number, acc: number) => {
    if (acc >= best) return;
    if (k === order.length) {
      const sc = score(pl).amortised;
      if (sc < best) {
        best = sc;
        bestHost = pl.host.slice();
      }
      return;
    }
    const v = order[k]!;
    for (let h = 0; h < p.nHost; h++) {
      if (!pl.fits(v, h)) continue;
      if (twin[h]! >= 0 && pl.count[h] === 0 && pl.count[twin[h]!] === 0 && p.origin.every((o) => o !== h)) continue;
      const open = pl.count[h] === 0 ? p.hostOpen[h]! : 0;
      const add = partial(v, h) + open + oneOffOf(p, v, h) / H;
      pl.move(v, h);
      rec(k + 1, acc + add);
      pl.move(v, -1);
    }
  };
  rec(0, 0);
  const out = new Placement(p, bestHost);
  return { placement: out, score: score(out) };
}

function oneOffOf(p: Problem, v: number, h: number): number {
  const o = p.origin[v]!;
  if (o < 0 || o === h) return 0;
  return p.vmMem[v]! * p.migCostPerKiB[p.hostSite[o]! * p.nSite + p.hostSite[h]!]!;
}
