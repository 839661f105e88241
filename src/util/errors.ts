/**
 * An error the user can fix: its message says what is wrong and what to type.
 * The CLI prints it without a stack trace and exits with `exitCode`.
 */
export class UserError extends Error {
  override name = 'UserError';
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}

/** A command we ran failed; carries what it printed so nothing is swallowed. */
export class CommandError extends Error {
  override name = 'CommandError';
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly code: number | string | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    const detail = (stderr || stdout).trim().split('\n').slice(-5).join('\n');
    const line = `${command} ${args.join(' ')}`;
    super(`${line.length > 300 ? `${line.slice(0, 300)}...` : line} failed (exit ${code}): ${detail}`);
  }
}

/*
 * Conditions library code meets, with the facts as fields. Their messages say
 * what is wrong and never name a command-line flag: the CLI (src/cli/errors.ts)
 * adds the flags and the command that fix them. Each is a UserError, so a
 * caller that does not know them still prints a useful message and exits 2.
 */

/** A VM that the VM directory does not hold; `vm` blank: no name was given. */
export class UnknownVmError extends UserError {
  override name = 'UnknownVmError';
  constructor(readonly vm: string) {
    super(vm.trim() === '' ? 'the VM name is empty' : `unknown VM '${vm}': it is not in the VM directory (vc:{vc}:vms)`);
  }
}

/** No agent has registered its host in the collector. */
export class NoHostsError extends UserError {
  override name = 'NoHostsError';
  constructor() {
    super('no host has registered in the collector: start the agents (virt-cohort agent)');
  }
}

/** A registered host lacks what is needed of it: its site, or its libvirt URI. */
export class IncompleteHostError extends UserError {
  override name = 'IncompleteHostError';
  constructor(
    readonly host: string,
    readonly missing: 'site' | 'uri',
  ) {
    super(missing === 'site' ? `host ${host} registered without a site: restart its agent with a site` : `host ${host} has no libvirt URI in the registry: restart its agent with its libvirt URI`);
  }
}

/** A server of ours cannot listen (`code`: the system's, e.g. EADDRINUSE). */
export class ListenError extends UserError {
  override name = 'ListenError';
  constructor(
    readonly what: string,
    readonly bind: string,
    readonly port: number,
    readonly code: string,
  ) {
    super(`cannot serve ${what} on ${bind}:${port} (${code}): ${code === 'EADDRINUSE' ? `another process holds that port: choose another ${what}Port` : `check ${what}Bind`}`);
  }
}
