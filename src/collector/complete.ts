import type { Redis } from 'ioredis';
import { sleep } from '../util/exec.js';
import { K } from './keys.js';
import { Registry } from './registry.js';

/** A host that should have reported a period and has not (yet). */
export interface Missing {
  period: number;
  host: string;
}

export interface Completeness {
  missing: Missing[];
  /** Latest lastSeen + grace among the missing hosts (ms): by then each has reported or is counted dead. 0 when nothing is missing. */
  answerableAt: number;
  /** Hosts whose report was applied, per period asked about. */
  reported: Map<number, Set<string>>;
}

/**
 * A period P is complete when every live host (lastSeen within the grace time
 * of `nowMs`) that had registered before P ended is in P's `reported` set. A
 * host that died stops blocking once its grace has run out; a host that
 * registered later was never expected to report P.
 */
export async function completeness(redis: Redis, periods: number[], periodSeconds: number, graceMs: number, nowMs: number): Promise<Completeness> {
  const hosts = (await new Registry(redis).hosts()).filter((h) => h.lastSeen >= nowMs - graceMs);
  // One command per period, side by side (periods are in different slots of a Redis Cluster).
  const out = await Promise.all(periods.map((p) => redis.smembers(K.reported(p))));
  const reported = new Map<number, Set<string>>();
  const missing: Missing[] = [];
  let answerableAt = 0;
  periods.forEach((p, i) => {
    const done = new Set(out[i] as string[]);
    reported.set(p, done);
    const end = (p + periodSeconds) * 1000;
    for (const h of hosts) {
      if (h.firstSeen < end && !done.has(h.host)) {
        missing.push({ period: p, host: h.host });
        answerableAt = Math.max(answerableAt, h.lastSeen + graceMs);
      }
    }
  });
  return { missing, answerableAt, reported };
}

/**
 * Polls until every period is complete or `deadline` (ms, on `clock`) passes,
 * whichever is first; returns the last state seen. Only the periods still
 * incomplete are read again.
 */
export async function waitComplete(redis: Redis, periods: number[], periodSeconds: number, graceMs: number, clock: () => number, deadline: number, pollMs: number): Promise<Completeness> {
  let state = await completeness(redis, periods, periodSeconds, graceMs, clock());
  while (state.missing.length && clock() < deadline) {
    await sleep(Math.max(1, Math.min(pollMs, deadline - clock())));
    const pending = [...new Set(state.missing.map((m) => m.period))];
    const again = await completeness(redis, pending, periodSeconds, graceMs, clock());
    for (const [p, s] of again.reported) state.reported.set(p, s);
    state = { missing: again.missing, answerableAt: again.answerableAt, reported: state.reported };
  }
  return state;
}
