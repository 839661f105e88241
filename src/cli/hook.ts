import { chmod, copyFile, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import { DEFAULTS } from '../agent/config.js';
import { packageRoot } from '../paths.js';
import { UserError } from '../util/errors.js';

export const hookSource = join(packageRoot, 'hooks', 'qemu');

/** Installs hooks/qemu as HOOKS_DIR/qemu.d/virt-cohort, and the agent's socket path beside it. */
export async function installHook(hooksDir: string, socket: string): Promise<string> {
  const target = join(hooksDir, 'qemu.d', 'virt-cohort');
  await mkdir(join(hooksDir, 'qemu.d'), { recursive: true });
  await copyFile(hookSource, `${target}.tmp`);
  await chmod(`${target}.tmp`, 0o755);
  await rename(`${target}.tmp`, target);
  await writeFile(join(hooksDir, 'virt-cohort.socket'), socket + '\n', { mode: 0o644 });
  return target;
}

export function installHookCommand(): Command {
  return new Command('install-hook')
    .description('install the libvirt qemu hook that tells the agent when VMs start, stop and migrate')
    .option('--hooks-dir <dir>', "libvirt's hook directory", '/etc/libvirt/hooks')
    .option('--socket <path>', "the agent's socket", DEFAULTS.socket)
    .option('--remove', 'remove the hook instead')
    .action(async (o) => {
      if (o.remove) {
        await rm(join(o.hooksDir, 'qemu.d', 'virt-cohort'), { force: true });
        await rm(join(o.hooksDir, 'virt-cohort.socket'), { force: true });
        process.stdout.write(`removed the virt-cohort hook from ${o.hooksDir}\n`);
        return;
      }
      if (!o.socket.startsWith('/')) throw new UserError(`--socket must be an absolute path (got '${o.socket}')`);
      const target = await installHook(o.hooksDir, o.socket);
      process.stdout.write(`installed ${target} (agent socket ${o.socket}).\nlibvirtd reads its hooks only when it starts: restart libvirtd (or virtqemud) once.\n`);
    });
}
