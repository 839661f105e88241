import { readFile } from 'node:fs/promises';
import { UserError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { logger } from '../util/log.js';

const log = logger('sensor');
export const BPFFS = '/sys/fs/bpf';

/** Why the BPF filesystem is not there and could not be mounted; `fix` is what to type. */
export class BpffsError extends UserError {
  override name = 'BpffsError';
  constructor(
    readonly reason: string,
    readonly fix: string,
  ) {
    super(`no BPF filesystem at ${BPFFS} (${reason}): ${fix}`);
  }
}

/** How many bpf filesystems are mounted at /sys/fs/bpf in this mount namespace. */
export async function bpffsMounts(): Promise<number> {
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  return mounts.split('\n').filter((l) => {
    const f = l.split(' ');
    return f[1] === BPFFS && f[2] === 'bpf';
  }).length;
}

/**
 * Mounts bpffs at /sys/fs/bpf when it is missing, as Cilium's agent does: a
 * machine without systemd has none. Returns whether it mounted. One caller
 * at a time: a second mount stacked on the first would hide its pins (the lab
 * mounts it once before it starts its agents).
 */
export async function ensureBpffs(): Promise<boolean> {
  if ((await bpffsMounts()) > 0) return false;
  if (process.getuid?.() !== 0) {
    throw new BpffsError('not root, so it cannot be mounted here', `mount it as root: mount -t bpf bpf ${BPFFS}`);
  }
  try {
    await run('mount', ['-t', 'bpf', 'bpf', BPFFS], { timeoutMs: 10_000 });
  } catch (err) {
    const why = (err as Error).message.split('\n').pop() ?? '';
    throw new BpffsError(`mounting it failed: ${why}`, `mount -t bpf bpf ${BPFFS} as root on the host (in a container: give it CAP_SYS_ADMIN or bind-mount the host's ${BPFFS})`);
  }
  log.info({ path: BPFFS }, `mounted the BPF filesystem at ${BPFFS} (it was missing)`);
  return true;
}
