/**
 * Periods aligned on the wall clock, as the seed asks: with 30 s periods every
 * host's period starts at hh:mm:00 and hh:mm:30, so reports from all hosts of a
 * cluster (NTP-synchronised) describe the same span. A period is named by the
 * Unix time, in seconds, at which it starts.
 */
/** The seed's period length, seconds: every host's, unless configured (agent.periodSeconds). */
export const DEFAULT_PERIOD_SECONDS = 30;

export interface Period {
  /** Unix seconds at the start. */
  start: number;
  /** Length in seconds. */
  length: number;
}

export function checkPeriodLength(seconds: number): number {
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 3600 || 3600 % seconds !== 0) {
    throw new RangeError(`a period must be a whole number of seconds that divides an hour (1, 2, ... 30, ... 3600); got ${seconds}`);
  }
  return seconds;
}

/** The period that contains the instant `ms` (Unix milliseconds). */
export function periodAt(ms: number, length: number): Period {
  const start = Math.floor(ms / 1000 / length) * length;
  return { start, length };
}

/** Milliseconds from `ms` to the start of the next period. */
export function msToNextBoundary(ms: number, length: number): number {
  const next = (periodAt(ms, length).start + length) * 1000;
  return next - ms;
}

export function periodLabel(p: Period): string {
  return new Date(p.start * 1000).toISOString().replace('.000Z', 'Z');
}
