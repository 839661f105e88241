import { px, rect, text, type Fragment } from './xml.js';

/** Light to dark (ColorBrewer YlGnBu): small rates light, large ones dark, readable in print and for most colour-blind eyes. */
const RAMP = ['#ffff99', '#c7e9b4', '#7fcdbb', '#41b6c4', '#1d91c0', '#225ea8', '#0c2c84'];
/** A cell without traffic: clearly not the lightest colour of the ramp. */
export const ZERO = '#f2f2f2';
/** Categorical colours for groups (Tableau 10), reused in the matrix, the site diagram and the tables. */
const GROUPS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

export function groupColour(i: number): string {
  return GROUPS[i % GROUPS.length]!;
}

/**
 * Rates span orders of magnitude (a chatty pair next to a heartbeat): a log
 * scale from the smallest non-zero value to the largest keeps both visible.
 */
export class LogScale {
  readonly lo: number;
  readonly hi: number;

  constructor(values: Iterable<number>) {
    let lo = Infinity;
    let hi = 0;
    for (const v of values) {
      if (!(v > 0) || !Number.isFinite(v)) continue;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    this.lo = hi > 0 ? lo : 0;
    this.hi = hi;
  }

  /** Position on the ramp, 0..1 (NaN for no traffic). */
  position(v: number): number {
    if (!(v > 0) || this.hi <= 0) return NaN;
    if (this.hi <= this.lo) return 1;
    const t = (Math.log10(v) - Math.log10(this.lo)) / (Math.log10(this.hi) - Math.log10(this.lo));
    return Math.min(1, Math.max(0, t));
  }

  colour(v: number): string {
    const t = this.position(v);
    return Number.isNaN(t) ? ZERO : ramp(t);
  }

  /** Powers of ten inside the range, with both ends: the legend's labels. */
  ticks(): number[] {
    if (this.hi <= 0) return [];
    if (this.hi <= this.lo) return [this.hi];
    const out = [this.lo];
    for (let e = Math.ceil(Math.log10(this.lo)); 10 ** e < this.hi; e++) {
      const v = 10 ** e;
      if (v > this.lo * 1.5 && v < this.hi / 1.5) out.push(v);
    }
    out.push(this.hi);
    return out;
  }
}

export function ramp(t: number): string {
  const x = Math.min(1, Math.max(0, t)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x));
  const f = x - i;
  const a = hex(RAMP[i]!);
  const b = hex(RAMP[i + 1]!);
  return `#${a
    .map((c, k) =>
      Math.round(c + f * (b[k]! - c))
        .toString(16)
        .padStart(2, '0'),
    )
    .join('')}`;
}

function hex(c: string): number[] {
  return [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16));
}

/** A vertical colour bar, dark (high) on top, with the tick values and a swatch for "no traffic". */
export function legend(scale: LogScale, height: number, unit: (v: number) => string, title: string): Fragment {
  const steps = 48;
  const barW = 14;
  const top = 26;
  const h = Math.max(60, height - top - 30);
  const body: string[] = [text(0, 11, title, 'font-weight="bold"')];
  if (scale.hi <= 0) {
    body.push(rect(0, top, barW, barW, `fill="${ZERO}" stroke="#999"`), text(barW + 6, top + 11, 'no traffic'));
    return { body: body.join('\n'), width: 120, height: top + 20 };
  }
  for (let s = 0; s < steps; s++) {
    const t = 1 - (s + 0.5) / steps;
    body.push(rect(0, top + (s * h) / steps, barW, h / steps + 0.5, `fill="${ramp(t)}"`));
  }
  body.push(rect(0, top, barW, h, 'fill="none" stroke="#999"'));
  let width = 80;
  const ticks = scale.ticks();
  const yOf = (v: number) => top + (1 - scale.position(v)) * h;
  // Both ends always; a decade between them only where its label does not touch another.
  const shown = ticks.filter((v, i) => i === 0 || i === ticks.length - 1 || (Math.abs(yOf(v) - yOf(ticks[0]!)) >= 18 && Math.abs(yOf(v) - yOf(ticks[ticks.length - 1]!)) >= 18));
  for (const v of shown) {
    const y = yOf(v);
    const label = unit(v);
    width = Math.max(width, barW + 10 + label.length * 6.6);
    body.push(`<line x1="${barW}" y1="${px(y)}" x2="${barW + 4}" y2="${px(y)}" stroke="#333"/>`, text(barW + 7, y + 4, label));
  }
  body.push(rect(0, top + h + 10, barW, barW, `fill="${ZERO}" stroke="#999"`), text(barW + 7, top + h + 21, 'none'));
  body.push(text(0, top + h + 44, 'log scale', 'fill="#666"'));
  return { body: body.join('\n'), width, height: top + h + 48 };
}
