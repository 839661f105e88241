import type { FlowCounts } from '../sensor/layout.js';

/**
 * Which periods one sensor read belongs to.
 *
 * A read normally covers exactly the period that just ended. It covers
 * several when the agent was down, or when a slow flush or a stalled event
 * loop held the read past a boundary; and none that is still open when the
 * wall clock was stepped back. The rule, so that queries never see one
 * period missing and the next one doubled:
 *
 * - The read covers `span`: its end is the boundary it was taken for, plus
 *   how late it was taken; its start is that end minus the time that really
 *   passed since the read before (a monotonic clock, so a clock step moves
 *   neither). Without a monotonic reference (after a restart), the wall time
 *   of the last read saved on disk.
 * - Every boundary inside the span closes a period, and the counts are split
 *   over those periods in proportion to the time each covers (the rate taken
 *   as even). What follows the last boundary belongs to it when the read came
 *   within `lateMs` of it (the usual few milliseconds), else it is carried
 *   into the next period.
 * - A period not after `lastClosed` was already reported (the clock went
 *   back): its share is carried into the next unclosed period instead, never
 *   reported twice.
 */
export interface Span {
  from: number;
  to: number;
}

export interface Share {
  /** Period start, Unix seconds. */
  period: number;
  from: number;
  to: number;
  fraction: number;
}

export interface Attribution {
  shares: Share[];
  /** The part of the read that goes into the next period. */
  carry: number;
  /** Periods the read covered that were already closed (a backward clock step). */
  folded: number[];
}

export function attribute(span: Span, lastClosed: number | undefined, periodSeconds: number, lateMs = 1000): Attribution {
  const L = periodSeconds * 1000;
  const total = span.to - span.from;
  const bounds: number[] = [];
  for (let b = Math.floor(span.from / L) * L + L; b <= span.to; b += L) if (b > span.from) bounds.push(b);
  if (!bounds.length) return { shares: [], carry: 1, folded: [] };
  const pieces: Share[] = [];
  let start = span.from;
  for (const b of bounds) {
    pieces.push({ period: b / 1000 - periodSeconds, from: start, to: b, fraction: 0 });
    start = b;
  }
  const last = bounds[bounds.length - 1]!;
  let tail = span.to - last;
  if (tail <= lateMs) {
    pieces[pieces.length - 1]!.to = span.to;
    tail = 0;
  }
  const frac = (ms: number) => (total > 0 ? ms / total : 0);
  for (const p of pieces) p.fraction = frac(p.to - p.from);
  // A zero-length read (two reads in the same millisecond) belongs to the period it closes.
  if (total <= 0) pieces[pieces.length - 1]!.fraction = 1;
  let carry = frac(tail);
  const folded: number[] = [];
  const shares: Share[] = [];
  for (const p of pieces) {
    if (lastClosed !== undefined && p.period <= lastClosed) {
      folded.push(p.period);
      carry += p.fraction;
    } else shares.push(p);
  }
  return { shares, carry, folded };
}

/**
 * Splits every flow's packets by `fractions` (summing to 1), and its bytes
 * in proportion to the packets each part got, so that the parts add up
 * exactly to the whole: each part gets the floor of its share, and what is
 * left goes to the largest remainders. Flows that get nothing in a part are
 * left out of it.
 */
export function splitFlows(flows: readonly FlowCounts[], fractions: readonly number[]): FlowCounts[][] {
  const out: FlowCounts[][] = fractions.map(() => []);
  if (fractions.length === 1) return [flows.map((f) => ({ ...f }))];
  for (const f of flows) {
    const packets = apportion(f.packets, fractions);
    // Bytes follow the packets, so that a part of same-sized packets holds exactly their bytes.
    const bytes = apportion(f.bytes, f.packets > 0 ? packets.map((x) => x / f.packets) : fractions);
    fractions.forEach((_, i) => {
      if (packets[i]! || bytes[i]!) out[i]!.push({ ...f, packets: packets[i]!, bytes: bytes[i]! });
    });
  }
  return out;
}

function apportion(n: number, fractions: readonly number[]): number[] {
  const exact = fractions.map((f) => n * f);
  const parts = exact.map(Math.floor);
  let left = n - parts.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (let k = 0; left > 0; k = (k + 1) % order.length, left--) parts[order[k]![1]]!++;
  return parts;
}
