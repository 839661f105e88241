import { UserError } from '../util/errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A duration as people type it: `500ms`, `30s`, `5m`, `1h`, `1d`, or a bare
 * number of seconds. `what` names the option in the error.
 */
export function parseDuration(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!m) throw new UserError(`${what} '${text}' is not a duration: write e.g. 30s, 5m, 1h, 500ms (a bare number is seconds)`);
  return Math.round(Number(m[1]) * UNIT_MS[m[2] ?? 's']!);
}

/**
 * The span of a query in periods: a whole number of periods (`10`), or a
 * duration (`5m`) rounded up to whole periods so that the span asked for is
 * always covered.
 */
export function spanPeriods(span: number | string, periodSeconds: number): number {
  let n: number;
  if (typeof span === 'number') n = span;
  else if (/^\s*-?\d+\s*$/.test(span)) n = Number(span);
  else if (span.trim() === '') throw new UserError('the span is empty: give a number of periods (e.g. 10) or a duration (e.g. 5m)');
  else if (/^\s*-/.test(span)) throw new UserError(`the span '${span}' is negative: give a positive number of periods (e.g. 10) or a duration (e.g. 5m)`);
  else n = Math.ceil(parseDuration(span, 'the span') / (periodSeconds * 1000));
  if (!Number.isInteger(n) || n < 1) {
    throw new UserError(`the span must cover at least one period; got '${span}': give a positive number of periods (e.g. 10) or a duration (e.g. 5m)`);
  }
  return n;
}

/** The starts (Unix s) of the `n` periods that end with the newest ended period at `nowMs`, oldest first. */
export function spanStarts(n: number, periodSeconds: number, nowMs: number): number[] {
  const current = Math.floor(nowMs / 1000 / periodSeconds) * periodSeconds;
  const newest = current - periodSeconds;
  return Array.from({ length: n }, (_, i) => newest - (n - 1 - i) * periodSeconds);
}
