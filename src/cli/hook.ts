import { Command } from 'commander';
import { DEFAULTS } from '../agent/config.js';
import { installHook, removeHook } from '../agent/hook.js';
import { UserError } from '../util/errors.js';

export function installHookCommand(): Command {
  return new Command('install-hook')
    .description('install the libvirt qemu hook that tells the agent when VMs start, stop and migrate')
    .option('--hooks-dir <dir>', "libvirt's hook directory", '/etc/libvirt/hooks')
    .option('--socket <path>', "the agent's socket", DEFAULTS.socket)
    .option('--remove', 'remove the hook instead')
    .action(async (o) => {
      if (o.remove) {
        await removeHook(o.hooksDir);
        process.stdout.write(`removed the virt-cohort hook from ${o.hooksDir}\n`);
        return;
      }
      if (!o.socket.startsWith('/')) throw new UserError(`--socket must be an absolute path (got '${o.socket}')`);
      const target = await installHook(o.hooksDir, o.socket);
      process.stdout.write(`installed ${target} (agent socket ${o.socket}).\nlibvirtd reads its hooks only when it starts: restart libvirtd (or virtqemud) once.\n`);
    });
}
