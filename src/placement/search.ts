import { ruleCost } from './constraints.js';
import { hostingRate, oneOff, scratch, siteCosts, type Placement } from './state.js';

export interface ImproveOptions {
  /** Full passes over the VMs; each pass is O(edges x sites + VMs x hosts). Default 8. */
  maxPasses?: number;
  /** Pairwise exchanges when a site is full; quadratic, so only up to this many VMs. Default 2000. */
  swapLimit?: number;
  /** Fiduccia-Mattheyses passes (steps x VMs x hosts each), only up to this many VMs. Default 256. */
  fmLimit?: number;
}

/**
 * Local search on the amortised objective (rate + one-off / horizon): move one VM to the host
 * that lowers it most while capacity allows, until nothing improves; then try exchanging two VMs
 * between full sites. Because one-off migration costs are part of what is minimised, a move that
 * would not pay back within the horizon is never made, which keeps stable traffic stable.
 * Equal deltas go to the fuller host, so ties consolidate rather than spread.
 */
export function improve(pl: Placement, opts: ImproveOptions = {}): void {
  const maxPasses = opts.maxPasses ?? 8;
  const small = pl.p.nVm <= (opts.swapLimit ?? 2000);
  for (let pass = 0; pass < maxPasses; pass++) {
    let moved = vertexPass(pl);
    if (small) moved += swapPass(pl);
    if (moved === 0 && pl.p.nVm <= (opts.fmLimit ?? 256)) moved += fmPass(pl);
    if (moved === 0) break;
  }
}

/** The change of the amortised objective if v went from its host to h (v's neighbours staying put). */
export function moveDelta(pl: Placement, v: number, h: number, cost: Float64Array): number {
  const p = pl.p;
  const cur = pl.host[v]!;
  const H = p.horizonSeconds;
  let d = cost[p.hostSite[h]!]! + hostingRate(p, v, h) + oneOff(p, v, h) / H + ruleCost(p, v, h, pl.host);
  if (pl.count[h] === 0) d += p.hostOpen[h]!;
  if (cur >= 0) {
    d -= cost[p.hostSite[cur]!]! + hostingRate(p, v, cur) + oneOff(p, v, cur) / H + ruleCost(p, v, cur, pl.host);
    if (pl.count[cur] === 1) d -= p.hostOpen[cur]!;
  }
  return d;
}

/**
 * Per site, the lowest hosting terms of its hosts: a lower bound on what a VM pays there, so a
 * whole site can be skipped when even that cannot beat the best move found (most VMs, most sites).
 * Sites with an availability window get no bound (the blended rate is not monotone in the terms).
 */
interface SiteBounds {
  hosts: Int32Array[];
  fixed: Float64Array;
  perCpu: Float64Array;
  perGiB: Float64Array;
  open: Float64Array;
  exact: Uint8Array;
}

function siteBounds(pl: Placement): SiteBounds {
  const p = pl.p;
  const lists: number[][] = Array.from({ length: p.nSite }, () => []);
  const b: SiteBounds = {
    hosts: [],
    fixed: new Float64Array(p.nSite).fill(Infinity),
    perCpu: new Float64Array(p.nSite).fill(Infinity),
    perGiB: new Float64Array(p.nSite).fill(Infinity),
    open: new Float64Array(p.nSite).fill(Infinity),
    exact: new Uint8Array(p.nSite).fill(1),
  };
  for (let h = 0; h < p.nHost; h++) {
    const s = p.hostSite[h]!;
    lists[s]!.push(h);
    b.fixed[s] = Math.min(b.fixed[s]!, p.hostFixed[h]!);
    b.perCpu[s] = Math.min(b.perCpu[s]!, p.hostPerCpu[h]!);
    b.perGiB[s] = Math.min(b.perGiB[s]!, p.hostPerGiB[h]!);
    b.open[s] = 0;
    if (p.windowFrac[h]! < 1) b.exact[s] = 0;
  }
  b.hosts = lists.map((l) => Int32Array.from(l));
  return b;
}

function vertexPass(pl: Placement): number {
  const p = pl.p;
  const s = scratch(p);
  const bounds = siteBounds(pl);
  let moved = 0;
  for (let v = 0; v < p.nVm; v++) {
    if (!p.movable[v] || pl.host[v]! < 0) continue;
    const cost = siteCosts(pl, v, s);
    const cur = pl.host[v]!;
    let best = -1;
    let bestD = -tolerance(cost[p.hostSite[cur]!]! + Math.abs(hostingRate(p, v, cur)));
    // What leaving cur saves at most: its comm, hosting, a host closed, a one-off undone.
    const leave = cost[p.hostSite[cur]!]! + hostingRate(p, v, cur) + (pl.count[cur] === 1 ? p.hostOpen[cur]! : 0) + oneOff(p, v, cur) / p.horizonSeconds + ruleCost(p, v, cur, pl.host);
    // The least one-off a host of the site can cost: 0 in the origin's site (the origin itself),
    // else the migration there. Without it a VM already moved would scan its own site's every host.
    const o = p.origin[v]!;
    const oSite = o >= 0 ? p.hostSite[o]! : -1;
    const margin = 1e-15 + 1e-12 * Math.abs(leave);
    for (let site = 0; site < p.nSite; site++) {
      const off = oSite < 0 || site === oSite ? 0 : (p.vmMem[v]! * p.migCostPerKiB[oSite * p.nSite + site]!) / p.horizonSeconds;
      if (bounds.exact[site] && cost[site]! + bounds.fixed[site]! + p.vmCpu[v]! * bounds.perCpu[site]! + (p.vmMem[v]! / 1048576) * bounds.perGiB[site]! + off - leave > bestD + margin) continue;
      const list = bounds.hosts[site]!;
      for (let k = 0; k < list.length; k++) {
        const h = list[k]!;
        if (h === cur || !pl.fits(v, h)) continue;
        const d = moveDelta(pl, v, h, cost);
        if (d < bestD - 1e-15 || (best >= 0 && d <= bestD + 1e-15 && pl.memUsed[h]! > pl.memUsed[best]!)) {
          best = h;
          bestD = Math.min(d, bestD);
        }
      }
    }
    if (best >= 0) {
      pl.move(v, best);
      moved++;
    }
  }
  return moved;
}

/** Ignore improvements below a billionth of what is at stake: they are rounding, not gains. */
function tolerance(scale: number): number {
  return 1e-12 + 1e-9 * Math.abs(scale);
}

function swapPass(pl: Placement): number {
  const p = pl.p;
  const g = p.graph;
  const S = p.nSite;
  const H = p.horizonSeconds;
  const costs = new Float64Array(p.nVm * S);
  const s = scratch(p);
  const refresh = (v: number) => costs.set(siteCosts(pl, v, s), v * S);
  for (let v = 0; v < p.nVm; v++) if (pl.host[v]! >= 0) refresh(v);
  const edgeM = new Float64Array(p.nVm);
  const edgeB = new Float64Array(p.nVm);
  const unit = (v: number, h: number) => costs[v * S + p.hostSite[h]!]! + hostingRate(p, v, h) + oneOff(p, v, h) / H + ruleCost(p, v, h, pl.host);
  let swaps = 0;
  for (let v = 0; v < p.nVm; v++) {
    const hv = pl.host[v]!;
    if (!p.movable[v] || hv < 0) continue;
    for (let i = g.offsets[v]!; i < g.offsets[v + 1]!; i++) {
      const u = g.neighbours[i]!;
      if (u < p.nVm) {
        edgeM[u] = g.edgeMessages[g.slotEdge[i]!]!;
        edgeB[u] = g.edgeBytes[g.slotEdge[i]!]!;
      }
    }
    // Only a VM whose traffic would rather be elsewhere looks for a partner, and only there:
    // this keeps the quadratic scan to the few VMs a full site holds back.
    const sv = p.hostSite[hv]!;
    let want = -1;
    for (let t = 0; t < S; t++) if (costs[v * S + t]! < costs[v * S + sv]! && (want < 0 || costs[v * S + t]! < costs[v * S + want]!)) want = t;
    let best = -1;
    let bestD = -tolerance(unit(v, hv));
    for (let u = 0; u < p.nVm && want >= 0; u++) {
      const hu = pl.host[u]!;
      if (u === v || !p.movable[u] || hu < 0 || p.hostSite[hu] !== want) continue;
      const su = want;
      if (!pl.fitsWithout(v, hu, u) || !pl.fitsWithout(u, hv, v)) continue;
      // Each side's delta assumed the other stayed: the edge between them is counted away twice.
      const k = sv * S + su;
      const d = unit(v, hu) - unit(v, hv) + unit(u, hv) - unit(u, hu) + 2 * (edgeM[u]! * p.msgCoef[k]! + edgeB[u]! * p.byteCoef[k]!);
      if (d < bestD) {
        bestD = d;
        best = u;
      }
    }
    for (let i = g.offsets[v]!; i < g.offsets[v + 1]!; i++) {
      const u = g.neighbours[i]!;
      if (u < p.nVm) edgeM[u] = edgeB[u] = 0;
    }
    if (best < 0) continue;
    const hu = pl.host[best]!;
    pl.move(v, -1);
    pl.move(best, hv);
    pl.move(v, hu);
    swaps++;
    for (const x of [v, best]) {
      refresh(x);
      for (let i = g.offsets[x]!; i < g.offsets[x + 1]!; i++) if (g.neighbours[i]! < p.nVm && pl.host[g.neighbours[i]!]! >= 0) refresh(g.neighbours[i]!);
    }
  }
  return swaps;
}

/**
 * One Fiduccia-Mattheyses pass: keep making the best single move among VMs not moved yet in this
 * pass, even when it makes things worse, then roll back to the best point reached. It crosses the
 * ridges where every single move or swap is uphill (a stencil cut one column off), which plain
 * descent cannot. Returns the number of moves kept.
 */
function fmPass(pl: Placement): number {
  const p = pl.p;
  const g = p.graph;
  const S = p.nSite;
  const costs = new Float64Array(p.nVm * S);
  const s = scratch(p);
  const refresh = (v: number) => costs.set(siteCosts(pl, v, s), v * S);
  for (let v = 0; v < p.nVm; v++) if (pl.host[v]! >= 0) refresh(v);
  const locked = new Uint8Array(p.nVm);
  const steps = Math.min(p.nVm, 100);
  const trail: { v: number; from: number }[] = [];
  let total = 0;
  let bestTotal = 0;
  let bestLen = 0;
  for (let k = 0; k < steps; k++) {
    let bv = -1;
    let bh = -1;
    let bd = Infinity;
    for (let v = 0; v < p.nVm; v++) {
      if (locked[v] || !p.movable[v] || pl.host[v]! < 0) continue;
      const cost = costs.subarray(v * S, v * S + S);
      for (let h = 0; h < p.nHost; h++) {
        if (h === pl.host[v] || p.hostSite[h] === p.hostSite[pl.host[v]!] || !pl.fits(v, h)) continue;
        const d = moveDelta(pl, v, h, cost);
        if (d < bd) {
          bd = d;
          bv = v;
          bh = h;
        }
      }
    }
    if (bv < 0) break;
    trail.push({ v: bv, from: pl.host[bv]! });
    pl.move(bv, bh);
    locked[bv] = 1;
    total += bd;
    refresh(bv);
    for (let i = g.offsets[bv]!; i < g.offsets[bv + 1]!; i++) {
      const u = g.neighbours[i]!;
      if (u < p.nVm && pl.host[u]! >= 0) refresh(u);
    }
    if (total < bestTotal - tolerance(bestTotal)) {
      bestTotal = total;
      bestLen = trail.length;
    }
  }
  for (let k = trail.length - 1; k >= bestLen; k--) pl.move(trail[k]!.v, trail[k]!.from);
  return bestLen;
}
