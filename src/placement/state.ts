import { allows, totalRuleCost } from './constraints.js';
import type { Problem } from './problem.js';

/** Relative slack on capacity checks: memory in KiB summed as doubles must not fail on rounding. */
const EPS = 1e-9;

/** A VM → host assignment with per-host load, kept in step on every move. -1 = not placed yet. */
export class Placement {
  readonly memUsed: Float64Array;
  readonly cpuUsed: Float64Array;
  readonly count: Int32Array;
  /**
   * Site of every graph node, kept in step with `host`: VMs first (-1 while not placed), then the
   * fixed endpoints (-1 when unknown). The search reads it once per edge, so it is a flat array.
   */
  readonly nodeSite: Int32Array;
  constructor(
    readonly p: Problem,
    readonly host: Int32Array,
  ) {
    this.memUsed = new Float64Array(p.nHost);
    this.cpuUsed = new Float64Array(p.nHost);
    this.count = new Int32Array(p.nHost);
    this.nodeSite = new Int32Array(p.nVm + p.endpointSite.length).fill(-1);
    this.nodeSite.set(p.endpointSite, p.nVm);
    for (let v = 0; v < host.length; v++) if (host[v]! >= 0) this.add(v, host[v]!);
  }
  clone(): Placement {
    return new Placement(this.p, this.host.slice());
  }
  /** Whether h can take v now: room, and no hard rule (must, apart) broken. */
  fits(v: number, h: number): boolean {
    return this.hasRoom(v, h) && allows(this.p, v, h, this.host);
  }
  /** Whether h has room for v now, rules aside. */
  hasRoom(v: number, h: number): boolean {
    const p = this.p;
    return p.destination[h] === 1 && this.memUsed[h]! + p.vmMem[v]! <= p.memCap[h]! * (1 + EPS) && this.cpuUsed[h]! + p.vmCpu[v]! <= p.cpuCap[h]! * (1 + EPS);
  }
  /** Whether h can take v after `out` (another VM) leaves it: for swaps. */
  fitsWithout(v: number, h: number, out: number): boolean {
    const p = this.p;
    return (
      p.destination[h] === 1 &&
      this.memUsed[h]! - p.vmMem[out]! + p.vmMem[v]! <= p.memCap[h]! * (1 + EPS) &&
      this.cpuUsed[h]! - p.vmCpu[out]! + p.vmCpu[v]! <= p.cpuCap[h]! * (1 + EPS) &&
      allows(p, v, h, this.host, out)
    );
  }
  move(v: number, h: number): void {
    const from = this.host[v]!;
    if (from >= 0) {
      this.memUsed[from]! -= this.p.vmMem[v]!;
      this.cpuUsed[from]! -= this.p.vmCpu[v]!;
      this.count[from]!--;
    }
    this.host[v] = h;
    if (h >= 0) this.add(v, h);
    else this.nodeSite[v] = -1;
  }
  private add(v: number, h: number): void {
    this.nodeSite[v] = this.p.hostSite[h]!;
    this.memUsed[h]! += this.p.vmMem[v]!;
    this.cpuUsed[h]! += this.p.vmCpu[v]!;
    this.count[h]!++;
  }
  siteOf(node: number): number {
    return this.nodeSite[node]!;
  }
}

/** Hosting rate of v on h before the availability window is taken into account. */
function baseRate(p: Problem, v: number, h: number): number {
  return p.hostFixed[h]! + p.vmCpu[v]! * p.hostPerCpu[h]! + (p.vmMem[v]! / 1048576) * p.hostPerGiB[h]!;
}

/**
 * Hosting rate averaged over the horizon: a host whose availability ends first hosts the VM only
 * for that share; for the rest it is back where it came from (the second move the seed warns about).
 */
export function hostingRate(p: Problem, v: number, h: number): number {
  const f = p.windowFrac[h]!;
  if (f >= 1) return baseRate(p, v, h);
  const back = p.origin[v]! >= 0 && p.origin[v] !== h ? p.origin[v]! : h;
  return f * baseRate(p, v, h) + (1 - f) * baseRate(p, v, back);
}

export function migrationSeconds(p: Problem, v: number, from: number, to: number): number {
  if (from < 0 || from === to) return 0;
  return p.vmMem[v]! * p.migSecPerKiB[p.hostSite[from]! * p.nSite + p.hostSite[to]!]!;
}

/** One-off cost of having v on h rather than on its origin, the return trip included when h's window ends first. */
export function oneOff(p: Problem, v: number, h: number): number {
  const o = p.origin[v]!;
  if (h === o) return 0;
  const S = p.nSite;
  const there = o < 0 ? 0 : p.vmMem[v]! * p.migCostPerKiB[p.hostSite[o]! * S + p.hostSite[h]!]!;
  if (p.windowFrac[h]! >= 1) return there;
  const from = p.hostSite[h]!;
  const backSite = o >= 0 ? p.hostSite[o]! : from === 0 && S > 1 ? 1 : 0;
  return there + p.vmMem[v]! * p.migCostPerKiB[from * S + backSite]!;
}

/** Scratch space for siteCosts, one per search. */
export interface Scratch {
  msgs: Float64Array;
  bytes: Float64Array;
  cost: Float64Array;
}

export function scratch(p: Problem): Scratch {
  return { msgs: new Float64Array(p.nSite), bytes: new Float64Array(p.nSite), cost: new Float64Array(p.nSite) };
}

/** Communication rate of v's edges if v sat at each site, the other ends staying where they are. */
export function siteCosts(pl: Placement, v: number, s: Scratch): Float64Array {
  const p = pl.p;
  const g = p.graph;
  const S = p.nSite;
  const { msgs, bytes } = s;
  msgs.fill(0);
  bytes.fill(0);
  const site = pl.nodeSite;
  const nb = g.neighbours;
  const sm = g.slotMessages;
  const sb = g.slotBytes;
  for (let i = g.offsets[v]!, end = g.offsets[v + 1]!; i < end; i++) {
    const t = site[nb[i]!]!;
    if (t < 0) continue;
    msgs[t]! += sm[i]!;
    bytes[t]! += sb[i]!;
  }
  for (let a = 0; a < S; a++) {
    let c = 0;
    for (let t = 0; t < S; t++) c += s.msgs[t]! * p.msgCoef[a * S + t]! + s.bytes[t]! * p.byteCoef[a * S + t]!;
    s.cost[a] = c;
  }
  return s.cost;
}

export interface Score {
  /** Objective rate (per second) excluding one-off migration costs. */
  rate: number;
  /** One-off cost of all moves from the origin, in the objective's unit. */
  oneOff: number;
  /** rate + oneOff / horizon + rules: what the search minimises. */
  amortised: number;
  /** What broken rules add to it (constraints.ts: a penalty per soft rule broken, HARD per hard one). */
  rules: number;
  interSiteMessages: number;
  interSiteBytes: number;
  hostsUsed: number;
  moves: number;
}

export function score(pl: Placement): Score {
  const p = pl.p;
  const g = p.graph;
  const S = p.nSite;
  let rate = 0;
  let im = 0;
  let ib = 0;
  const site = pl.nodeSite;
  for (let e = 0; e < g.edgeA.length; e++) {
    const a = site[g.edgeA[e]!]!;
    const b = site[g.edgeB[e]!]!;
    if (a < 0 || b < 0 || a === b) continue;
    im += g.edgeMessages[e]!;
    ib += g.edgeBytes[e]!;
    rate += g.edgeMessages[e]! * p.msgCoef[a * S + b]! + g.edgeBytes[e]! * p.byteCoef[a * S + b]!;
  }
  let off = 0;
  let moves = 0;
  for (let v = 0; v < p.nVm; v++) {
    const h = pl.host[v]!;
    if (h < 0) continue;
    rate += hostingRate(p, v, h);
    off += oneOff(p, v, h);
    if (p.origin[v]! >= 0 && h !== p.origin[v]) moves++;
  }
  let hostsUsed = 0;
  for (let h = 0; h < p.nHost; h++) {
    if (pl.count[h]! > 0) {
      hostsUsed++;
      rate += p.hostOpen[h]!;
    }
  }
  const rules = totalRuleCost(p, pl.host);
  return { rate, oneOff: off, amortised: rate + off / p.horizonSeconds + rules, rules, interSiteMessages: im, interSiteBytes: ib, hostsUsed, moves };
}
