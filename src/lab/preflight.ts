import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { UserError } from '../util/errors.js';

/** Programs the lab runs, with the Debian package that provides each. */
const LAB_COMMANDS: Record<string, string> = {
  ip: 'iproute2',
  tc: 'iproute2',
  bridge: 'iproute2',
  nsenter: 'util-linux',
  unshare: 'util-linux',
  libvirtd: 'libvirt-daemon-system',
  virtlogd: 'libvirt-daemon-system',
  virsh: 'libvirt-clients',
  'qemu-system-x86_64': 'qemu-system-x86',
  'redis-server': 'redis-server',
  'redis-cli': 'redis-tools',
};

export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) {
    throw new UserError(`${what} must run as root (it creates network namespaces and runs libvirtd): sudo virt-cohort ${what}`);
  }
}

async function onPath(cmd: string): Promise<boolean> {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/sbin']);
  for (const d of dirs) {
    try {
      await access(join(d, cmd), constants.X_OK);
      return true;
    } catch {
      /* try the next directory */
    }
  }
  return false;
}

export async function requireCommands(): Promise<void> {
  const missing: string[] = [];
  for (const [cmd, pkg] of Object.entries(LAB_COMMANDS)) {
    if (!(await onPath(cmd))) missing.push(`${cmd} (Debian package ${pkg})`);
  }
  if (missing.length) {
    throw new UserError(`missing programs: ${missing.join(', ')}. Run 'npm run setup' as root in the virt-cohort checkout; it installs them.`);
  }
}
