import { fmtBytesRate } from '../placement/explain.js';
import { groupColour } from '../report/colour.js';
import { clock, ticks } from '../report/timeline.js';
import { esc, px, svgElement, text, type Fragment } from '../report/xml.js';

/** One strategy's line: inter-site bytes per period, and the instants of its moves. */
export interface Line {
  name: string;
  /** Period starts (s) and bytes crossing sites in each. */
  series: { start: number; interSiteBytes: number }[];
  moves: number[];
}

const W = 760;
const H = 260;
const LEFT = 70;
const TOP = 10;
/** At most this many points a line (periods averaged in buckets): a day of 2,880 periods stays a small file. */
const POINTS = 480;

/**
 * Inter-site traffic over the trace, one line per strategy (bytes/s, averaged
 * over buckets of periods), a tick under the axis at each of its moves; drawn
 * with the report's pieces (axes, clock labels, colours), as an SVG file.
 */
export function interSiteSvg(lines: Line[], periodSeconds: number): string {
  return svgElement(chart(lines, periodSeconds), 'inter-site traffic over time, per strategy');
}

function chart(lines: Line[], L: number): Fragment {
  const starts = lines[0]?.series.map((p) => p.start) ?? [];
  if (!starts.length) return { body: text(0, 14, 'the trace holds no period', 'fill="#666"'), width: 300, height: 22 };
  const lo = starts[0]! * 1000;
  const hi = (starts.at(-1)! + L) * 1000;
  const per = Math.max(1, Math.ceil(starts.length / POINTS));
  const buckets = lines.map((l) => {
    const out: { t: number; rate: number }[] = [];
    for (let i = 0; i < l.series.length; i += per) {
      const part = l.series.slice(i, i + per);
      out.push({ t: (part[0]!.start + (part.length * L) / 2) * 1000, rate: part.reduce((a, p) => a + p.interSiteBytes, 0) / (part.length * L) });
    }
    return out;
  });
  const top = Math.max(1, ...buckets.flat().map((b) => b.rate)) * 1.05;
  const x = (t: number) => LEFT + ((t - lo) / (hi - lo)) * W;
  const y = (r: number) => TOP + H - (r / top) * H;
  const body: string[] = [];
  body.push(`<line x1="${LEFT}" y1="${TOP + H}" x2="${LEFT + W}" y2="${TOP + H}" stroke="#333"/>`, `<line x1="${LEFT}" y1="${TOP}" x2="${LEFT}" y2="${TOP + H}" stroke="#333"/>`);
  for (const t of ticks(lo, hi)) {
    body.push(`<line x1="${px(x(t))}" y1="${TOP}" x2="${px(x(t))}" y2="${TOP + H + 4}" stroke="#eee"/>`, text(x(t), TOP + H + 16, clock(t, hi - lo), 'text-anchor="middle" fill="#444"'));
  }
  for (let k = 0; k <= 4; k++) {
    const r = (top * k) / 4;
    body.push(text(LEFT - 6, y(r) + 4, fmtBytesRate(r), 'text-anchor="end" fill="#444" font-size="10"'));
  }
  lines.forEach((l, i) => {
    const c = groupColour(i);
    const pts = buckets[i]!.map((b) => `${px(x(b.t))},${px(y(b.rate))}`).join(' ');
    body.push(`<polyline fill="none" stroke="${c}" stroke-width="1.5" points="${pts}"><title>${esc(l.name)}</title></polyline>`);
    for (const m of l.moves) body.push(`<line x1="${px(x(m))}" y1="${TOP + H + 22 + i * 6}" x2="${px(x(m))}" y2="${TOP + H + 27 + i * 6}" stroke="${c}"/>`);
  });
  const legendTop = TOP + H + 34 + lines.length * 6;
  lines.forEach((l, i) => {
    body.push(`<rect x="${LEFT}" y="${legendTop + i * 16}" width="12" height="3" fill="${groupColour(i)}"/>`, text(LEFT + 18, legendTop + i * 16 + 5, l.name));
  });
  body.push(text(LEFT, legendTop + lines.length * 16 + 10, 'inter-site bytes/s (times UTC; ticks under the axis: moves)', 'fill="#666"'));
  return { body: body.join('\n'), width: LEFT + W + 20, height: legendTop + lines.length * 16 + 18 };
}
