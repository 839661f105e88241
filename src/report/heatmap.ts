import { legend, LogScale, ZERO } from './colour.js';
import { esc, px, rect, text, textWidth, translate, type Fragment } from './xml.js';

export interface HeatmapInput {
  /** Rows and columns, in this order (VMs ordered by group). */
  vms: { name: string; label: string; colour?: string }[];
  /** Each group's members (names) and frame colour; frames are drawn around their rows × columns. */
  groups: { members: string[]; colour: string }[];
  /** Non-zero cells only: the matrix is drawn sparse, so thousands of VMs stay a file a browser opens. */
  cells: { src: string; dst: string; value: number }[];
  unit: (v: number) => string;
  legendTitle: string;
}

/**
 * The seed's communication matrix: one square per (sender row, receiver
 * column), coloured on a log scale, group frames, a legend on the right.
 */
export function heatmap(input: HeatmapInput): Fragment {
  const n = input.vms.length;
  const index = new Map(input.vms.map((v, i) => [v.name, i]));
  const cell = Math.max(2, Math.min(28, Math.floor(560 / Math.max(1, n))));
  const labelled = cell >= 9;
  const longest = labelled
    ? Math.min(
        220,
        input.vms.reduce((m, v) => Math.max(m, textWidth(v.label)), 0),
      )
    : 0;
  const left = labelled ? longest + 16 : 10;
  const top = labelled ? longest + 16 : 10;
  const size = n * cell;
  const scale = new LogScale(input.cells.map((c) => c.value));
  const body: string[] = [];
  body.push(rect(left, top, Math.max(size, 1), Math.max(size, 1), `fill="${ZERO}" stroke="#bbb"`));
  if (labelled) {
    input.vms.forEach((v, i) => {
      const fill = v.colour ? ` fill="${v.colour}"` : '';
      const y = top + i * cell + cell / 2 + 4;
      body.push(text(left - 6, y, v.label, `text-anchor="end"${fill}`));
      const x = left + i * cell + cell / 2 + 4;
      body.push(text(x, top - 6, v.label, `text-anchor="start" transform="rotate(-90 ${px(x)} ${px(top - 6)})"${fill}`));
    });
  }
  const stroke = cell >= 6 ? ' stroke="#fff" stroke-width="0.5"' : '';
  for (const c of input.cells) {
    const r = index.get(c.src);
    const k = index.get(c.dst);
    if (r === undefined || k === undefined || !(c.value > 0)) continue;
    body.push(
      rect(left + k * cell, top + r * cell, cell, cell, `fill="${scale.colour(c.value)}"${stroke} data-src="${esc(c.src)}" data-dst="${esc(c.dst)}"`, `${c.src} → ${c.dst}: ${input.unit(c.value)}`),
    );
  }
  for (const g of input.groups) {
    const ids = g.members.map((m) => index.get(m)).filter((x): x is number => x !== undefined);
    if (ids.length < 2) continue; // a VM alone is not framed: there is nothing to keep together
    const lo = Math.min(...ids);
    const span = Math.max(...ids) - lo + 1;
    body.push(rect(left + lo * cell, top + lo * cell, span * cell, span * cell, `fill="none" stroke="${g.colour}" stroke-width="2.5"`));
  }
  if (n === 0) body.push(text(left + 8, top + 20, 'no running VM'));
  const key = legend(scale, Math.max(size, 200), input.unit, input.legendTitle);
  const keyX = left + size + 24;
  body.push(translate(key, keyX, top));
  return { body: body.join('\n'), width: keyX + key.width + 10, height: top + Math.max(size, key.height) + 10 };
}
