import { readdir, readFile } from 'node:fs/promises';
import { run } from '../util/exec.js';

/** The libvirt daemons that run hooks: the monolithic one, and the modular QEMU driver. */
export const LIBVIRT_DAEMONS = ['libvirtd', 'virtqemud'];

export interface DaemonProcess {
  pid: number;
  name: string;
  /** Wall-clock start, ms since the epoch. */
  startedAt: number;
}

let clockTicks: number | undefined;

/** When a process started: /proc/PID/stat field 22 (ticks after boot) + the boot time. */
export async function processStart(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(after[19]);
  if (!Number.isFinite(ticks)) return undefined;
  const btime = Number(/^btime (\d+)$/m.exec(await readFile('/proc/stat', 'utf8'))?.[1]);
  clockTicks ??= Number((await run('getconf', ['CLK_TCK']).catch(() => '100')).trim()) || 100;
  return btime * 1000 + (ticks / clockTicks) * 1000;
}

/**
 * The libvirt daemon to compare with the hook: the one whose pid file a lab
 * keeps beside its hooks (HOST/etc/libvirt/hooks → HOST/libvirtd.pid), else
 * the system's pid files, else any running libvirtd/virtqemud.
 */
export async function libvirtDaemon(pidFiles: string[]): Promise<DaemonProcess | undefined> {
  for (const f of pidFiles) {
    const pid = Number((await readFile(f, 'utf8').catch(() => '')).trim());
    if (pid > 0) {
      const d = await describe(pid);
      if (d) return d;
    }
  }
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const d = await describe(Number(entry));
    if (d) return d;
  }
  return undefined;
}

async function describe(pid: number): Promise<DaemonProcess | undefined> {
  const name = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
  if (!LIBVIRT_DAEMONS.includes(name)) return undefined;
  const startedAt = await processStart(pid);
  return startedAt === undefined ? undefined : { pid, name, startedAt };
}
