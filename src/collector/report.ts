import { UserError } from '../util/errors.js';

/** One host's counts for one period: what an agent spools and publishes. */
export interface Report {
  v: 1;
  host: string;
  site: string;
  /** Period start, Unix seconds. */
  period: number;
  /** Period length, seconds. */
  length: number;
  /** The reads that bound these counts (ms): `from` is earlier than the period's start when the agent was down at a boundary. */
  from: number;
  to: number;
  /** [pair member, messages, bytes], each pair once. */
  pairs: [string, number, number][];
  /** Packets and bytes the sensor could not attribute to a peer (flow map full). */
  overflow: { packets: number; bytes: number };
  /** Pairs summed into their VM's `*` peer, beyond its cap of peers that are not VMs (agent/pairs.ts); counted, not dropped. */
  folded?: number;
  unknownTap: number;
  /** Set on the empty report of a period that the host's wall clock jumped over (agent/ledger.ts): no counts, by design. */
  clockStep?: true;
  /** VMs this host counted during the period. */
  vms: string[];
}

/** The summary kept in the period's meta hash (the pairs live in sorted sets). */
export function reportMeta(r: Report): string {
  return JSON.stringify({ from: r.from, to: r.to, pairs: r.pairs.length, overflow: r.overflow, folded: r.folded ?? 0, unknownTap: r.unknownTap, vms: r.vms, ...(r.clockStep && { clockStep: true }) });
}

/** Checks a report read back from disk; a spool file from another version is refused, not guessed at. */
export function parseReport(text: string, where: string): Report {
  let r: Report;
  try {
    r = JSON.parse(text) as Report;
  } catch (err) {
    throw new UserError(`${where} is not valid JSON (${(err as Error).message}): move it out of the spool to let the agent go on`);
  }
  if (r?.v !== 1 || typeof r.host !== 'string' || !Number.isInteger(r.period) || !Array.isArray(r.pairs)) {
    throw new UserError(`${where} is not a version-1 virt-cohort report: move it out of the spool to let the agent go on`);
  }
  return r;
}
