import { UserError } from '../util/errors.js';
import type { FlowCounts } from './layout.js';

/** What one read of the sensor returns: the counts since the previous read. */
export interface Reading {
  flows: FlowCounts[];
  /** Packets and bytes that found the flow map full: counted, but not per peer. */
  overflow: { packets: number; bytes: number };
  /** Packets seen on a tap with no VM registered (should stay 0). */
  unknownTap: number;
  /** Wall-clock time of the swap that closed this reading (ms since epoch). */
  at: number;
}

export interface Attachment {
  tap: string;
  vm: number;
}

export interface ReconcileResult {
  attached: string[];
  removed: string[];
  failed: { tap: string; error: string }[];
}

/**
 * One sensor per host, for all its VM taps. Two backends share this interface:
 * eBPF on tc (the default) and libpcap (the seed's approach, a fallback).
 */
export interface Sensor {
  readonly kind: 'ebpf' | 'pcap';
  /** Flows one period can hold per peer before overflowing into the totals (0: no fixed limit). */
  readonly capacity: number;
  /** Why this backend was chosen over eBPF, when it was a fallback (said by the agent, doctor and status). */
  readonly fallbackReason?: string;
  /** Which paths the backend counts with, for the log (eBPF: per-CPU or shared flow maps, how filters are attached). */
  describe?(): string;
  /** `mac` is the VM's MAC on that tap: the pcap backend needs it to tell directions apart. */
  attach(tap: string, vm: number, mac?: string): Promise<void>;
  detach(tap: string): Promise<void>;
  attached(): Promise<Attachment[]>;
  /**
   * Makes what is counted match `want`: attaches what is missing, stops
   * counting taps not wanted. One tap that fails never stops the others.
   */
  reconcile(want: (Attachment & { mac?: string })[]): Promise<ReconcileResult>;
  /** Counts since the previous read; nothing is lost or counted twice between reads. */
  read(): Promise<Reading>;
  close(): Promise<void>;
}

const TAP_RE = /^[A-Za-z0-9_.:-]{1,15}$/;

export function checkTapName(tap: string): string {
  if (!TAP_RE.test(tap)) {
    throw new UserError(`'${tap}' is not a valid interface name (1 to 15 letters, digits, '_', '.', ':' or '-')`);
  }
  return tap;
}
