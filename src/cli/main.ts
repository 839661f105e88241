#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { redisGone } from '../config/redis.js';
import { packageRoot } from '../paths.js';
import { CommandError, UserError } from '../util/errors.js';
import { aclCommand } from './acl.js';
import { agentCommand } from './agent.js';
import { configCommand } from './config.js';
import { doctorCommand } from './doctor.js';
import { envCommand } from './env.js';
import { explain } from './errors.js';
import { groupsCommand, planCommand } from './analysis.js';
import { installHookCommand } from './hook.js';
import { labCommandMissing, labInstalled } from './labs.js';
import { historyCommand, hostCommand, managerCommand, migrateCommand } from './manager.js';
import { placeCommand } from './place.js';
import { recordCommand, replayCommand } from './replay.js';
import { reportCommand } from './report.js';
import { rulesCommand } from './rules.js';
import { statsCommand } from './stats.js';
import { topCommand } from './top.js';

const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string };

const program = new Command('virt-cohort')
  .description('Keep communicating virtual machines together: sense VM-to-VM traffic, find groups, live-migrate with libvirt')
  .version(pkg.version)
  .showHelpAfterError('(add --help for usage)')
  .exitOverride();
program.addCommand(agentCommand());
program.addCommand(configCommand());
program.addCommand(doctorCommand());
program.addCommand(installHookCommand());
// The lab's commands where the lab is installed (a checkout), a note where it is not (the package).
const lab = labInstalled();
program.addCommand(lab ? (await import('./demo.js')).demoCommand() : labCommandMissing('demo'));
program.addCommand(lab ? (await import('./lab.js')).labCommand() : labCommandMissing('lab'));
program.addCommand(managerCommand());
program.addCommand(migrateCommand());
program.addCommand(historyCommand());
program.addCommand(hostCommand());
program.addCommand(topCommand());
program.addCommand(statsCommand());
program.addCommand(groupsCommand());
program.addCommand(planCommand());
program.addCommand(placeCommand());
program.addCommand(rulesCommand());
program.addCommand(envCommand());
program.addCommand(reportCommand());
program.addCommand(recordCommand());
program.addCommand(replayCommand());
program.addCommand(aclCommand());

try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = report(err);
}

function report(err: unknown): number {
  if (err instanceof CommanderError) return err.exitCode;
  if (err instanceof UserError) {
    process.stderr.write(`virt-cohort: ${explain(err)}\n`);
    return err.exitCode;
  }
  const denied = nopermOf(err);
  if (denied) {
    process.stderr.write(
      `virt-cohort: Redis refused it (${denied}): the Redis user in use (redis.username, VIRT_COHORT_REDIS_USERNAME) may not do this; ` +
        'migrate, host drain|undrain, place --apply and env apply|set need vc-manager, the other commands read as vc-reader (virt-cohort acl; docs/security.md)\n',
    );
    return 1;
  }
  const gone = redisGone(err);
  if (gone) {
    process.stderr.write(`virt-cohort: ${gone}\n`);
    return 1;
  }
  if (err instanceof CommandError) {
    process.stderr.write(`virt-cohort: ${err.message}\n`);
    return 1;
  }
  process.stderr.write(`virt-cohort: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 1;
}

/** The NOPERM line of a command a Redis ACL (virt-cohort acl) refused, also inside a MULTI: the wrong role's credentials, not a bug. */
function nopermOf(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const all = [err, ...((err as { previousErrors?: Error[] }).previousErrors ?? [])];
  return all.map((e) => e.message.split('\n')[0]!).find((m) => m.startsWith('NOPERM'));
}
