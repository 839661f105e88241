import type { PairTraffic } from '../analysis/index.js';
import { groupColour } from '../report/colour.js';
import { heatmap } from '../report/heatmap.js';
import { fmtMessageRate } from '../report/render.js';
import { stack, svgElement, text } from '../report/xml.js';

/**
 * The communication matrix as the seed drew it with gnuplot: one square per
 * (sender, receiver), darker for more messages/s (log scale, with a legend),
 * VMs ordered by group, each group framed in its colour; the site of each VM
 * in its label. `virt-cohort report` draws the same matrix from the collector.
 */
export function matrixSvg(title: string, vms: { name: string; site: string }[], groups: string[][], traffic: PairTraffic[]): string {
  const inGroup = new Map<string, number>();
  groups.forEach((g, i) => g.forEach((v) => inGroup.set(v, i)));
  const byName = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });
  const order = [...vms].sort((a, b) => (inGroup.get(a.name) ?? 1e9) - (inGroup.get(b.name) ?? 1e9) || byName(a.name, b.name));
  const colour = (name: string) => (inGroup.has(name) ? groupColour(inGroup.get(name)!) : '#444');
  const map = heatmap({
    vms: order.map((v) => ({ name: v.name, label: `${v.name} (${v.site})`, colour: colour(v.name) })),
    groups: groups.map((g, i) => ({ members: g, colour: groupColour(i) })),
    cells: traffic.map((p) => ({ src: p.src, dst: p.dst, value: p.messages })),
    unit: fmtMessageRate,
    legendTitle: 'messages/s',
  });
  const head = (s: string, attrs = '') => ({ body: text(0, 14, s, attrs), width: s.length * 7, height: 20 });
  const body = stack([head(title, 'font-size="14" font-weight="bold"'), head('row: sender, column: receiver; darker = more messages/s (log scale); frames: groups found', 'fill="#444"'), map], 10);
  return `${svgElement({
    body: `<rect width="100%" height="100%" fill="white"/>\n<g transform="translate(10,10)">\n${body.body}\n</g>`,
    width: body.width + 20,
    height: body.height + 20,
  })}\n`;
}
