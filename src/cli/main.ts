#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { redisGone } from '../config/redis.js';
import { packageRoot } from '../paths.js';
import { CommandError, UserError } from '../util/errors.js';
import { agentCommand } from './agent.js';
import { configCommand } from './config.js';
import { doctorCommand } from './doctor.js';
import { explain } from './errors.js';
import { groupsCommand, planCommand } from './analysis.js';
import { installHookCommand } from './hook.js';
import { demoCommand } from './demo.js';
import { labCommand } from './lab.js';
import { historyCommand, hostCommand, managerCommand, migrateCommand } from './manager.js';
import { placeCommand } from './place.js';
import { reportCommand } from './report.js';
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
program.addCommand(demoCommand());
program.addCommand(labCommand());
program.addCommand(managerCommand());
program.addCommand(migrateCommand());
program.addCommand(historyCommand());
program.addCommand(hostCommand());
program.addCommand(topCommand());
program.addCommand(statsCommand());
program.addCommand(groupsCommand());
program.addCommand(planCommand());
program.addCommand(placeCommand());
program.addCommand(reportCommand());

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
