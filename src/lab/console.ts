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

/** Whether one console line reports a guest kernel error. */
export const isKernelTrouble = (line: string): boolean => KERNEL_TROUBLE.test(line);

/** The console's lines that report a guest kernel error. */
export const kernelTrouble = (text: string): string[] => text.split('\n').filter(isKernelTrouble);

/** The clock source a guest named on its `VCGUEST up` line (init.sh), if it named one. */
export const guestClock = (text: string): string | undefined => /^VCGUEST up .*\bclock=(\S+)/m.exec(text)?.[1];

/** Parses every VCGEN line in a guest's console log from a byte offset on. */
export async function guestReports(lab: string, vm: string, offset = 0): Promise<GuestReport[]> {
  return parseReports(await consoleSince(consoleLog(lab, vm), offset));
}

/** Every whole VCGEN line of a console's text, parsed (a line still being written, or cut, is skipped). */
export function parseReports(text: string): GuestReport[] {
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
