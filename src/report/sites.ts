import { groupColour } from './colour.js';
import type { ReportData } from './data.js';
import { rect, text, textWidth, type Fragment } from './xml.js';

const SITE_W = 300;
const PAD = 10;
const PILL_H = 18;
const PER_ROW = 4; // sites side by side before wrapping

/**
 * Where everything runs: one box per site, a box per host inside it, a pill
 * per VM in its group's colour, so a group split across sites shows as one
 * colour in two boxes.
 */
export function siteDiagram(d: ReportData): Fragment {
  const groupOf = new Map(d.vms.map((v) => [v.name, v.group]));
  const boxes = d.sites.map((s) =>
    siteBox(
      s.name,
      d.hosts.filter((h) => h.site === s.name),
      groupOf,
    ),
  );
  const body: string[] = [];
  let y = 0;
  let width = 0;
  for (let i = 0; i < boxes.length; i += PER_ROW) {
    const row = boxes.slice(i, i + PER_ROW);
    const h = Math.max(...row.map((b) => b.height));
    row.forEach((b, k) => body.push(`<g transform="translate(${k * (SITE_W + 20)},${y})">\n${b.body}\n</g>`));
    width = Math.max(width, row.length * (SITE_W + 20) - 20);
    y += h + 20;
  }
  if (!boxes.length) {
    body.push(text(0, 14, 'no host in the registry'));
    y = 40;
  }
  return { body: body.join('\n'), width: Math.max(width, 200), height: y - 20 + 4 };
}

function siteBox(name: string, hosts: ReportData['hosts'], groupOf: Map<string, number>): Fragment {
  const body: string[] = [];
  let y = 30;
  for (const h of hosts) {
    const pills: string[] = [];
    let x = PAD;
    let py = y + 24;
    for (const vm of h.vms) {
      const w = textWidth(vm, 12.4) + 14; // bold: wider than the plain estimate
      if (x + w > SITE_W - 2 * PAD && x > PAD) {
        x = PAD;
        py += PILL_H + 4;
      }
      const g = groupOf.get(vm) ?? 0;
      pills.push(rect(PAD + x, py, w, PILL_H, `rx="9" fill="${groupColour(g)}"`, `${vm}: group ${g + 1}, host ${h.name}`));
      pills.push(text(PAD + x + 7, py + 13, vm, 'fill="#fff" font-weight="bold"'));
      x += w + 4;
    }
    const hostH = (h.vms.length ? py + PILL_H - y : 24) + 10;
    const state = h.live ? `${h.vms.length} VM(s)` : `silent · ${h.vms.length} VM(s)`;
    body.push(rect(PAD, y, SITE_W - 2 * PAD, hostH, `rx="4" fill="#fff" stroke="${h.live ? '#888' : '#c33'}"${h.live ? '' : ' stroke-dasharray="4 3"'}`));
    body.push(text(PAD + 8, y + 16, h.name, 'font-weight="bold"'), text(SITE_W - PAD - 8, y + 16, state, 'text-anchor="end" fill="#666"'));
    if (!h.vms.length) body.push(text(PAD + 8, y + hostH - 8, '(no running VM)', 'fill="#999"'));
    body.push(...pills);
    y += hostH + 8;
  }
  const height = y + 2;
  return {
    body: [rect(0, 0, SITE_W, height, 'rx="8" fill="#f4f6fa" stroke="#556"'), text(PAD, 20, `site ${name}`, 'font-size="13" font-weight="bold"'), ...body].join('\n'),
    width: SITE_W,
    height,
  };
}
