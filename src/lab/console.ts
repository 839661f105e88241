import { consoleSince } from './vm.js';
import { consoleLog } from './state.js';

/** One line of the guest traffic generator's report: cumulative counts per peer address. */
export interface GuestReport {
  name: string;
  t_ms: number;
  tx: Record<string, { n: number; bytes: number; txerr?: number }>;
  rx: Record<string, { n: number; bytes: number; lost: number; gap_ms: number; maxgap_ms?: number }>;
}

/**
 * A guest kernel's error on its console: printed by the kernel itself (`[   12.3] BUG: ...`; `quiet` leaves only
 * errors on the console) or passed on by the Debian image's vc-init as a VCKMSG line.
 */
const KERNEL_TROUBLE = /^(?:VCKMSG .*|.*\] )(?:BUG|Oops|Kernel panic|[Pp]anic|general protection|\S+ corruption|Bad page)/;

/** The console's lines that report a guest kernel error. */
export const kernelTrouble = (text: string): string[] => text.split('\n').filter((l) => KERNEL_TROUBLE.test(l));

/** Parses every VCGEN line in a guest's console log from a byte offset on. */
export async function guestReports(lab: string, vm: string, offset = 0): Promise<GuestReport[]> {
  const text = await consoleSince(consoleLog(lab, vm), offset);
  const out: GuestReport[] = [];
  for (const m of text.matchAll(/^VCGEN (\{.*\})\s*$/gm)) {
    try {
      out.push(JSON.parse(m[1]!) as GuestReport);
    } catch {
      // A line cut by a migration's switch-over or a reboot: skip it, the next one is whole.
    }
  }
  return out;
}
