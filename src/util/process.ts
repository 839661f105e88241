import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

/**
 * True while the process runs. A zombie counts as gone: daemons we stop are
 * re-parented to an init that may reap them late.
 */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state letter follows the command name, which may itself hold ')'.
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

/** The pid in a pid file, if that process still runs. */
export async function livePid(pidFile: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}
