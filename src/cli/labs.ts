import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { parseEnvironment, type Environment } from '../placement/env.js';
import { UserError } from '../util/errors.js';

/**
 * The lab (src/lab, and the lab and demo commands) is left out of the Debian
 * package, which holds what a host runs: the agent, the manager, the commands
 * and the hook. Commands load the lab's modules only for --lab, through here.
 */
export function labInstalled(): boolean {
  return existsSync(fileURLToPath(new URL('../lab/lab.js', import.meta.url)));
}

const MISSING =
  'the lab is not part of this installation (the package holds the agent, the manager, the commands and the hook): ' +
  'run the lab from a checkout of virt-cohort (npm run setup, then virt-cohort lab up)';

/** What commands use of the lab, for --lab. */
export async function loadLab() {
  if (!labInstalled()) throw new UserError(`--lab: ${MISSING}`);
  const [lab, agents, environment, guests] = await Promise.all([import('../lab/lab.js'), import('../lab/agents.js'), import('../lab/environment.js'), import('../lab/guests.js')]);
  return {
    requireLab: lab.requireLab,
    labRedisUrl: agents.labRedisUrl,
    labRoutes: agents.labRoutes,
    labEnvironment: environment.labEnvironment,
    startLabGuests: guests.startLabGuests,
  };
}

/** `virt-cohort lab` and `demo` where the lab is not installed: they say so instead of being unknown. */
export function labCommandMissing(name: string): Command {
  return new Command(name)
    .description(`(not installed: ${name === 'demo' ? 'the demo runs on the lab, which' : 'the lab'} is not part of this installation)`)
    .argument('[args...]')
    .allowUnknownOption()
    .helpOption(false)
    .action(() => {
      throw new UserError(`${name}: ${MISSING}`);
    });
}

/** What `--lab NAME` means in every command that talks to a collector: that lab's Redis and its environment. */
export interface LabTarget {
  redis: string;
  env: Environment;
  /** A line for stderr saying which environment is in use. */
  note: string;
}

/**
 * Resolves `--lab` (refused beside an explicit `--redis`), or undefined when
 * it was not given. A lab that is not up is an error naming the labs that are.
 */
export async function labTarget(cmd: Command, o: { lab?: unknown }): Promise<LabTarget | undefined> {
  if (typeof o.lab !== 'string') return undefined;
  if (cmd.getOptionValueSource('redis') === 'cli') throw new UserError('give either --redis or --lab, not both');
  const { requireLab, labRedisUrl, labEnvironment } = await loadLab();
  const lab = await requireLab(o.lab);
  return {
    redis: labRedisUrl(lab),
    env: parseEnvironment(labEnvironment(lab), `lab ${lab.name}`),
    note: `lab '${lab.name}': ${lab.sites} site(s), ${lab.delayMs} ms and ${lab.rateMbit} Mbit/s between sites`,
  };
}
