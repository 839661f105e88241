import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { mergeFlows, type FlowCounts } from '../sensor/layout.js';
import { writeDurable } from '../util/files.js';
import { logger } from '../util/log.js';
import { periodLabel } from '../util/period.js';
import { attribute, splitFlows, type Share } from './periods.js';

const log = logger('agent');

/** At most a day of periods is filled after a forward clock step; a bigger step leaves the rest as a gap (logged). */
const MAX_FILL_SECONDS = 86_400;

/**
 * What the agent knows of its periods from one read to the next and across
 * restarts, kept in STATE_DIR/periods.json: when it last read the sensor, the
 * newest period it reported, and the counts carried into the next period
 * (see periods.ts for the rule).
 */
export class PeriodLedger {
  private constructor(
    private readonly file: string,
    private lastRead: number,
    /** The monotonic clock at the last read; unknown after a restart. */
    private lastReadMono: number | undefined,
    private lastClosed: number | undefined,
    private carried: FlowCounts[],
  ) {}

  /** The ledger the agent before this one left, or a new one from now; a corrupt file is set aside. */
  static async open(stateDir: string, now: number, mono: number): Promise<PeriodLedger> {
    const file = join(stateDir, 'periods.json');
    const text = await readFile(file, 'utf8').catch(() => undefined);
    if (text === undefined) {
      // An agent of the version before kept only the last read.
      const old = Number(await readFile(join(stateDir, 'last-read'), 'utf8').catch(() => ''));
      return old ? new PeriodLedger(file, old, undefined, undefined, []) : new PeriodLedger(file, now, mono, undefined, []);
    }
    try {
      const st = JSON.parse(text) as { lastRead: number; lastClosed?: number; carried?: FlowCounts[] };
      if (!Number.isFinite(st.lastRead)) throw new Error('no lastRead');
      return new PeriodLedger(file, st.lastRead, undefined, st.lastClosed, st.carried ?? []);
    } catch (err) {
      await rename(file, `${file}.bad`).catch(() => undefined);
      log.error({ err, file: `${file}.bad` }, 'unreadable period state set aside: the first period after this start may hold counts from before it');
      return new PeriodLedger(file, now, mono, undefined, []);
    }
  }

  /**
   * The periods one read covers and their flows (the carried counts in the
   * first): `boundary` the read was taken for, `firedAt` when its timer fired,
   * `now`/`mono` the clocks at the read.
   */
  take(flows: readonly FlowCounts[], boundary: number, firedAt: number, now: number, mono: number, periodSeconds: number): { skipped: number[]; shares: Share[]; parts: FlowCounts[][] } {
    // The read's end: the boundary it was taken for, plus how late it came (a stall before it).
    const end = boundary + Math.max(0, now - firedAt);
    const elapsed = this.lastReadMono === undefined ? now - this.lastRead : mono - this.lastReadMono;
    const span = { from: end - Math.max(0, elapsed), to: end };
    const { shares, carry, folded } = attribute(span, this.lastClosed, periodSeconds);
    if (folded.length) {
      log.warn(
        { periods: folded.map((p) => periodLabel({ start: p, length: periodSeconds })), lastClosed: this.lastClosed },
        'the clock went back: these periods were already reported (applied once); their counts go into the next period',
      );
    }
    if (shares.length > 1) {
      log.warn(
        { periods: shares.length, from: new Date(span.from).toISOString(), to: new Date(span.to).toISOString() },
        'one read covered several periods (agent down, or held up): its counts are split over them by time',
      );
    }
    const parts = splitFlows(flows, [...shares.map((x) => x.fraction), carry]);
    const next = parts.pop()!;
    if (shares.length) parts[0] = mergeFlows([...this.carried, ...parts[0]!]);
    this.carried = mergeFlows(shares.length ? next : [...this.carried, ...next]);
    return { skipped: this.skipped(shares[0]?.period, periodSeconds), shares, parts };
  }

  /**
   * The periods a forward clock step jumped over: after the last one closed
   * and before `first`, the first this read reports. No time passed in them
   * for this agent (the read's span is measured on the monotonic clock), so
   * they are reported empty, marked as a clock step: a gap would leave them
   * incomplete for good, and exact queries over them refused forever.
   */
  private skipped(first: number | undefined, periodSeconds: number): number[] {
    if (first === undefined || this.lastClosed === undefined) return [];
    const all: number[] = [];
    for (let p = this.lastClosed + periodSeconds; p < first; p += periodSeconds) all.push(p);
    if (!all.length) return all;
    const kept = all.slice(-Math.floor(MAX_FILL_SECONDS / periodSeconds));
    const label = (p: number) => periodLabel({ start: p, length: periodSeconds });
    log.warn({ from: label(all[0]!), to: label(all.at(-1)!), periods: all.length }, 'the clock went forward: the periods it jumped over are reported empty, marked as a clock step');
    if (kept.length < all.length)
      log.error(
        { before: label(kept[0]!), periods: all.length - kept.length },
        'the clock went forward more than a day: the periods before the last day are left as a gap (queries over them need approx)',
      );
    return kept;
  }

  /** Once the reports of a read are spooled: `newest` the last period reported, if any. */
  async commit(newest: number | undefined, now: number, mono: number): Promise<void> {
    if (newest !== undefined) this.lastClosed = newest;
    this.lastRead = now;
    this.lastReadMono = mono;
    await writeDurable(this.file, JSON.stringify({ lastRead: this.lastRead, lastClosed: this.lastClosed, carried: this.carried }));
  }
}
