import { IncompleteHostError, ListenError, NoHostsError, UnknownVmError, type UserError } from '../util/errors.js';

/** A library error as a person at the command line reads it: with the flags and the command that fix it. */
export function explain(err: UserError): string {
  if (err instanceof UnknownVmError) {
    return err.vm.trim() === '' ? `${err.message}: \`virt-cohort stats --vms\` lists the VM directory` : `${err.message}; \`virt-cohort stats --vms\` lists the VMs`;
  }
  if (err instanceof NoHostsError) return `${err.message}, or check --redis / --lab`;
  if (err instanceof IncompleteHostError) {
    return err.missing === 'site'
      ? `host ${err.host} registered without a site: restart its agent with --site, or pass --env with the host in a site`
      : `host ${err.host} has no libvirt URI in the registry: restart its agent with --libvirt-uri, or exclude the host from --env`;
  }
  if (err instanceof ListenError) return `${err.message} (${err.code === 'EADDRINUSE' ? `--${err.what}` : `--${err.what}-bind`})`;
  return err.message;
}
