import { chmod, copyFile, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from '../paths.js';

/**
 * The libvirt hook in a hook directory (libvirt's /etc/libvirt/hooks, or a lab
 * host's): hooks/qemu as qemu.d/virt-cohort, and beside the directory the path
 * of the agent's socket the hook writes to.
 */
const installed = (hooksDir: string) => ({ hook: join(hooksDir, 'qemu.d', 'virt-cohort'), socket: join(hooksDir, 'virt-cohort.socket') });

/** Installs the hook pointed at the agent's `socket`; returns where it went. */
export async function installHook(hooksDir: string, socket: string): Promise<string> {
  const target = installed(hooksDir);
  await mkdir(join(hooksDir, 'qemu.d'), { recursive: true });
  await copyFile(join(packageRoot, 'hooks', 'qemu'), `${target.hook}.tmp`);
  await chmod(`${target.hook}.tmp`, 0o755);
  await rename(`${target.hook}.tmp`, target.hook);
  await writeFile(target.socket, `${socket}\n`, { mode: 0o644 });
  return target.hook;
}

export async function removeHook(hooksDir: string): Promise<void> {
  const target = installed(hooksDir);
  await rm(target.hook, { force: true });
  await rm(target.socket, { force: true });
}
