/** A piece of a picture: SVG elements drawn from (0,0), and the room they take. */
export interface Fragment {
  body: string;
  width: number;
  height: number;
}

/** Text and attribute values come from Redis (VM and host names): everything is escaped, quotes included. */
export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** Coordinates with at most one decimal, so the files stay small and diff well. */
export const px = (x: number): string => String(Math.round(x * 10) / 10);

export function text(x: number, y: number, s: string, attrs = ''): string {
  return `<text x="${px(x)}" y="${px(y)}"${attrs ? ` ${attrs}` : ''}>${esc(s)}</text>`;
}

export function rect(x: number, y: number, w: number, h: number, attrs: string, tip?: string): string {
  const head = `<rect x="${px(x)}" y="${px(y)}" width="${px(w)}" height="${px(h)}" ${attrs}`;
  return tip === undefined ? `${head}/>` : `${head}><title>${esc(tip)}</title></rect>`;
}

export function translate(f: Fragment, x: number, y: number): string {
  return `<g transform="translate(${px(x)},${px(y)})">\n${f.body}\n</g>`;
}

/** A standalone SVG element (with its namespace, so it is also a valid .svg file). */
export function svgElement(f: Fragment, label?: string): string {
  const w = Math.ceil(f.width);
  const h = Math.ceil(f.height);
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif" font-size="11"` +
    `${label ? ` role="img" aria-label="${esc(label)}"` : ''}>\n${f.body}\n</svg>`
  );
}

/** Fragments one under the other, `gap` apart. */
export function stack(parts: Fragment[], gap = 24): Fragment {
  const body: string[] = [];
  let y = 0;
  let width = 0;
  for (const p of parts) {
    body.push(translate(p, 0, y));
    y += p.height + gap;
    width = Math.max(width, p.width);
  }
  return { body: body.join('\n'), width, height: Math.max(0, y - gap) };
}

/** Approximate width of `s` at 11 px sans-serif: enough to lay labels out without measuring fonts. */
export function textWidth(s: string, size = 11): number {
  return s.length * size * 0.6;
}
