import type { Problem } from './problem.js';
import { hostingRate, migrationSeconds, type Placement } from './state.js';

export function fmtBytesRate(b: number): string {
  const units = ['B/s', 'KB/s', 'MB/s', 'GB/s'];
  let i = 0;
  while (b >= 1000 && i < units.length - 1) {
    b /= 1000;
    i++;
  }
  return `${b.toFixed(b < 10 && i > 0 ? 2 : 0)} ${units[i]}`;
}

export function fmtSeconds(s: number): string {
  if (!Number.isFinite(s)) return 'never';
  if (s < 120) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 7200) return `${(s / 60).toFixed(0)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function fmtGain(p: Problem, rate: number): string {
  if (p.objective === 'cost') return `${(rate * 3600).toPrecision(3)} per hour`;
  if (p.objective === 'time') return rate >= 1 ? `${rate.toPrecision(3)} s of run time per second` : `${(rate * 1000).toPrecision(3)} ms of run time per second`;
  return `${rate.toPrecision(3)} busy host/link units`;
}

/**
 * One plain sentence per move: why this VM (who it talks to where it goes, against what it leaves
 * behind), what it saves, what the migration costs and when the plan pays back.
 */
export function explainMove(pl: Placement, v: number, to: number, gain: number, oneOffCost: number, payback: number, rules: readonly string[] = []): string {
  const p = pl.p;
  const g = p.graph;
  const from = pl.host[v]!;
  const fs = p.hostSite[from]!;
  const ts = p.hostSite[to]!;
  let toBytes = 0;
  let fromBytes = 0;
  const peers: [string, number][] = [];
  for (let i = g.offsets[v]!; i < g.offsets[v + 1]!; i++) {
    const u = g.neighbours[i]!;
    const b = g.edgeBytes[g.slotEdge[i]!]!;
    const s = pl.siteOf(u);
    if (s === ts) {
      toBytes += b;
      peers.push([g.names[u]!, b]);
    } else if (s === fs) fromBytes += b;
  }
  peers.sort((a, b) => b[1] - a[1]);
  const names =
    peers
      .slice(0, 3)
      .map((x) => x[0])
      .join(', ') + (peers.length > 3 ? ` and ${peers.length - 3} more` : '');
  const where = fs === ts ? `within site ${p.siteNames[fs]}` : `from site ${p.siteNames[fs]} to site ${p.siteNames[ts]}`;
  const parts = [`${g.names[v]} moves from ${p.hostNames[from]} to ${p.hostNames[to]} (${where})`];
  if (fs !== ts) {
    parts.push(
      peers.length > 0
        ? `it exchanges ${fmtBytesRate(toBytes)} with ${names} there against ${fmtBytesRate(fromBytes)} with what stays at ${p.siteNames[fs]}`
        : `it exchanges ${fmtBytesRate(fromBytes)} with VMs left at ${p.siteNames[fs]} and nothing at ${p.siteNames[ts]}`,
    );
  }
  const hFrom = hostingRate(p, v, from);
  const hTo = hostingRate(p, v, to);
  if (p.objective === 'cost' && hFrom !== hTo) parts.push(`hosting there costs ${(hTo * 3600).toPrecision(3)}/h instead of ${(hFrom * 3600).toPrecision(3)}/h`);
  if (p.objective === 'time' && hFrom !== hTo) parts.push(`the destination host is ${hTo < hFrom ? 'faster' : 'slower'}`);
  if (p.objective === 'resources' && pl.count[from] === 1) parts.push(`this empties host ${p.hostNames[from]}`);
  if (p.windowFrac[to]! < 1) parts.push(`${p.hostNames[to]} stays available for only ${Math.round(p.windowFrac[to]! * 100)}% of the horizon, so a move back is counted`);
  if (rules.length) parts.push(`where it is it breaks a rule: ${rules.join('; ')}`);
  if (rules.length && gain < 0) parts.push(`the rule comes first: on traffic alone it loses ${fmtGain(p, -gain)}`);
  else parts.push(gain >= 0 ? `it saves ${fmtGain(p, gain)}` : `on its own it loses ${fmtGain(p, -gain)}, the moves before or after it in this plan make up for it`);
  const secs = migrationSeconds(p, v, from, to);
  const cost = p.objective === 'time' ? '' : ` (one-off cost ${oneOffCost.toPrecision(3)})`;
  parts.push(`migrating ${(p.vmMem[v]! / 1048576).toFixed(2)} GiB takes about ${fmtSeconds(secs)}${cost}${rules.length ? '' : `, and the plan up to here pays back after ${fmtSeconds(payback)}`}`);
  return `${parts.join('; ')}.`;
}
