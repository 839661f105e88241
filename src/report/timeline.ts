import type { MigrationRecord, Outcome } from '../manager/history.js';
import { px, rect, text, textWidth, type Fragment } from './xml.js';

export const OUTCOME_COLOUR: Record<Outcome, string> = { ok: '#2e8b57', failed: '#d62728', aborted: '#ff7f0e' };
const ROW = 22;
const AXIS_W = 640;

/**
 * The migrations over the span: one row per VM that moved, a bar from start
 * to end of each migration (at least a few pixels wide, so a 2 s move in an
 * hour shows), coloured by outcome and labelled from → to.
 */
export function timeline(migrations: MigrationRecord[], fromMs: number, toMs: number): Fragment {
  if (!migrations.length) return { body: text(0, 14, 'no migration in this span', 'fill="#666"'), width: 300, height: 22 };
  const vms = [...new Set(migrations.map((m) => m.vm))];
  const left = Math.min(200, Math.max(...vms.map((v) => textWidth(v)))) + 14;
  const lo = Math.min(fromMs, ...migrations.map((m) => m.at));
  const hi = Math.max(toMs, lo + 1000, ...migrations.map((m) => m.at + m.seconds * 1000));
  const x = (t: number) => left + ((t - lo) / (hi - lo)) * AXIS_W;
  const top = 8;
  const body: string[] = [];
  vms.forEach((v, i) => {
    const y = top + i * ROW;
    if (i % 2 === 0) body.push(rect(left, y, AXIS_W, ROW, 'fill="#f7f7f7"'));
    body.push(text(left - 8, y + 15, v, 'text-anchor="end"'));
  });
  const bottom = top + vms.length * ROW;
  body.push(`<line x1="${left}" y1="${bottom}" x2="${left + AXIS_W}" y2="${bottom}" stroke="#333"/>`);
  for (const t of ticks(lo, hi)) {
    body.push(`<line x1="${px(x(t))}" y1="${top}" x2="${px(x(t))}" y2="${bottom + 4}" stroke="#ccc"/>`);
    body.push(text(x(t), bottom + 16, clock(t, hi - lo), 'text-anchor="middle" fill="#444"'));
  }
  for (const m of migrations) {
    const y = top + vms.indexOf(m.vm) * ROW;
    const x0 = x(m.at);
    const w = Math.max(4, x(m.at + m.seconds * 1000) - x0);
    const tip =
      `${new Date(m.at).toISOString()} ${m.vm} ${m.from} → ${m.to}: ${m.outcome}, ${m.seconds.toFixed(1)} s` +
      (m.downtimeMs !== undefined ? `, downtime ${m.downtimeMs} ms` : '') +
      (m.error ? `: ${m.error}` : m.reason ? `: ${m.reason}` : '');
    body.push(rect(x0, y + 4, w, ROW - 8, `rx="2" fill="${OUTCOME_COLOUR[m.outcome] ?? '#888'}"`, tip));
    const label = `${m.from} → ${m.to}`;
    const after = x0 + w + 4;
    // Labels go right of the bar, or left of it near the end of the axis.
    body.push(after + textWidth(label, 10) < left + AXIS_W + 120 ? text(after, y + 15, label, 'font-size="10"') : text(x0 - 4, y + 15, label, 'font-size="10" text-anchor="end"'));
  }
  let lx = left;
  const ly = bottom + 34;
  for (const [o, c] of Object.entries(OUTCOME_COLOUR)) {
    body.push(rect(lx, ly - 10, 12, 12, `fill="${c}"`), text(lx + 16, ly, o));
    lx += 80;
  }
  body.push(text(lx + 10, ly, 'times UTC', 'fill="#666"'));
  return { body: body.join('\n'), width: left + AXIS_W + 130, height: ly + 8 };
}

/** About six round instants over [lo, hi]. */
export function ticks(lo: number, hi: number): number[] {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400].map((s) => s * 1000);
  const step = steps.find((s) => (hi - lo) / s <= 7) ?? Math.ceil((hi - lo) / 7 / 86_400_000) * 86_400_000;
  const out: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) out.push(t);
  return out;
}

export function clock(t: number, range: number): string {
  const iso = new Date(t).toISOString();
  if (range > 2 * 86_400_000) return iso.slice(5, 16).replace('T', ' ');
  return range < 600_000 ? iso.slice(11, 19) : iso.slice(11, 16);
}
