import { readFileSync } from 'node:fs';

/**
 * True while the process runs. A zombie counts as gone: daemons we stop are
 * re-parented to an init that may reap them late.
 */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
