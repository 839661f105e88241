import type { PairTraffic } from '../analysis/index.js';

/**
 * The communication matrix as the seed drew it with gnuplot: one square per
 * (sender, receiver), darker for more messages/s (log scale), VMs ordered by
 * group, each group framed; the site of each VM in its label.
 */
export function matrixSvg(title: string, vms: { name: string; site: string }[], groups: string[][], traffic: PairTraffic[]): string {
  const inGroup = new Map<string, number>();
  groups.forEach((g, i) => g.forEach((v) => inGroup.set(v, i)));
  const order = [...vms].sort((a, b) => (inGroup.get(a.name) ?? 1e9) - (inGroup.get(b.name) ?? 1e9) || a.name.localeCompare(b.name));
  const idx = new Map(order.map((v, i) => [v.name, i]));
  const n = order.length;
  const cell = Math.max(8, Math.min(48, Math.floor(480 / Math.max(1, n))));
  const left = 150;
  const top = 60;
  const rate = new Map<string, number>();
  let max = 0;
  for (const p of traffic) {
    if (!idx.has(p.src) || !idx.has(p.dst)) continue;
    const k = `${p.src}>${p.dst}`;
    rate.set(k, (rate.get(k) ?? 0) + p.messages);
    max = Math.max(max, rate.get(k)!);
  }
  const shade = (x: number) => (x <= 0 || max <= 0 ? 1 : 1 - Math.log1p(x) / Math.log1p(max));
  const parts: string[] = [];
  const w = left + n * cell + 40;
  const h = top + n * cell + 60;
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="11">`);
  parts.push(`<rect width="100%" height="100%" fill="white"/>`);
  parts.push(`<text x="10" y="20" font-size="14">${esc(title)}</text>`);
  parts.push(`<text x="10" y="40">row: sender, column: receiver; darker = more messages/s (max ${max.toFixed(1)}/s); frames: groups found</text>`);
  order.forEach((v, i) => {
    parts.push(`<text x="${left - 6}" y="${top + i * cell + cell / 2 + 4}" text-anchor="end">${esc(`${v.name} (${v.site})`)}</text>`);
  });
  for (const a of order) {
    for (const b of order) {
      const g = Math.round(255 * shade(rate.get(`${a.name}>${b.name}`) ?? 0));
      parts.push(`<rect x="${left + idx.get(b.name)! * cell}" y="${top + idx.get(a.name)! * cell}" width="${cell}" height="${cell}" fill="rgb(${g},${g},255)" stroke="#ddd"/>`);
    }
  }
  for (const g of groups) {
    const ids = g.map((v) => idx.get(v)).filter((x): x is number => x !== undefined);
    if (!ids.length) continue;
    const lo = Math.min(...ids);
    const size = Math.max(...ids) - lo + 1;
    parts.push(`<rect x="${left + lo * cell}" y="${top + lo * cell}" width="${size * cell}" height="${size * cell}" fill="none" stroke="red" stroke-width="2"/>`);
  }
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
