import { UserError } from '../util/errors.js';
import { run } from '../util/exec.js';

/**
 * The hypervisor adapter's libvirt-client half: what the Node binding cannot do
 * (migration, job info) or what the lab needs before any agent runs, done with
 * libvirt's own `virsh` and argument arrays.
 */
export interface DomainSummary {
  name: string;
  state: string;
  id: number | null;
}

const virsh = (uri: string, args: string[], timeoutMs = 60_000) => run('virsh', ['-q', '-c', uri, ...args], { timeoutMs });

/** A domain name as libvirt would take it, refused otherwise (libvirt refuses '/' in names; an argument cannot hold NUL). */
export class DomainNameError extends UserError {
  override name = 'DomainNameError';
  constructor(
    readonly domain: string,
    why: string,
  ) {
    super(`${JSON.stringify(domain.slice(0, 200))} is not a libvirt domain name (${why}): use the name \`virsh list --all\` shows`);
  }
}

/** Longer than any name libvirt's tools print in practice; keeps a forged name from becoming a huge argument. */
const MAX_NAME = 1024;

export function checkDomainName(name: string): string {
  if (typeof name !== 'string' || name === '') throw new DomainNameError(String(name ?? ''), 'empty');
  if (name.length > MAX_NAME) throw new DomainNameError(name, `longer than ${MAX_NAME} characters`);
  if (/[\0\n/]/.test(name)) throw new DomainNameError(name, 'it holds a NUL, a newline or a /');
  return name;
}

/**
 * `virsh COMMAND [OPTIONS] -- POSITIONALS`: virsh (9.0 checked) reads every
 * argument after `--` as a positional, so a domain named `--domain=victim` or
 * `--all` is a name, never an option. Options must come before the `--`.
 */
export function virshCommand(command: string, options: readonly string[], positionals: readonly string[]): string[] {
  return [command, ...options, '--', ...positionals];
}

/** The arguments of one command on one domain (its name checked, behind `--`). */
export function domainCommand(command: string, name: string, options: readonly string[] = []): string[] {
  return virshCommand(command, options, [checkDomainName(name)]);
}

export async function listDomains(uri: string): Promise<DomainSummary[]> {
  const out = await virsh(uri, ['list', '--all']);
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => {
      const m = /^(\S+)\s+(\S+)\s+(.+)$/.exec(l);
      if (!m) throw new Error(`unexpected 'virsh list' line: ${l}`);
      return { id: m[1] === '-' ? null : Number(m[1]), name: m[2]!, state: m[3]!.trim() };
    });
}

export async function defineDomain(uri: string, xmlFile: string): Promise<void> {
  await virsh(uri, virshCommand('define', [], [xmlFile]));
}

export async function startDomain(uri: string, name: string): Promise<void> {
  await virsh(uri, domainCommand('start', name));
}

export async function destroyDomain(uri: string, name: string): Promise<void> {
  await virsh(uri, domainCommand('destroy', name));
}

export async function undefineDomain(uri: string, name: string): Promise<void> {
  await virsh(uri, domainCommand('undefine', name));
}

export async function domainState(uri: string, name: string): Promise<string> {
  return (await virsh(uri, domainCommand('domstate', name))).trim();
}

export async function domainXml(uri: string, name: string): Promise<string> {
  return virsh(uri, domainCommand('dumpxml', name));
}

export interface DomainInterface {
  /** The tap on the host (vnetN); '-' while the domain is not running. */
  tap: string;
  type: string;
  source: string;
  model: string;
  mac: string;
}

export async function domainInterfaces(uri: string, name: string): Promise<DomainInterface[]> {
  const out = await virsh(uri, domainCommand('domiflist', name));
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((c) => c.length === 5 && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(c[4]!))
    .map(([tap, type, source, model, mac]) => ({ tap: tap!, type: type!, source: source!, model: model!, mac: mac!.toLowerCase() }));
}

export interface MigrateOptions {
  /** Where the memory stream goes (e.g. tcp://10.0.1.2), when it must differ from the control URI's host. */
  migrateUri?: string;
  /** false: the VM is paused for the whole copy (virsh migrate without --live; manager.live). Default true. */
  live?: boolean;
  timeoutMs?: number;
  /** Let QEMU throttle the guest's CPUs when its memory changes faster than the link copies it. */
  autoConverge?: boolean;
  /** Send the memory over TLS (QEMU's certificates under /etc/pki/qemu on both hosts); libvirt fails the migration rather than send it in clear. */
  tls?: boolean;
  /**
   * Migrate although libvirt sees the disks on a local file system: for
   * storage that every host sees at the same path but that libvirt cannot
   * recognise as shared (not NFS, Ceph, GlusterFS...), such as the lab's.
   */
  unsafe?: boolean;
  /** Copy the disks too (--copy-storage-all, over NBD): local disks; the destination must hold an image of each already. */
  copyStorage?: boolean;
}

/**
 * Live, peer-to-peer migration that leaves the domain defined only on the
 * destination. Post-copy stays off: a failed post-copy loses the VM.
 */
export async function migrateDomain(srcUri: string, name: string, destUri: string, opts: MigrateOptions = {}): Promise<void> {
  await virsh(srcUri, migrateArgs(name, destUri, opts), opts.timeoutMs ?? 600_000);
}

/** `virsh migrate`'s arguments: options first, then `--`, the domain and the destination URI. */
export function migrateArgs(name: string, destUri: string, opts: MigrateOptions = {}): string[] {
  const options = [...(opts.live === false ? [] : ['--live']), '--p2p', '--persistent', '--undefinesource'];
  if (opts.migrateUri) options.push('--migrateuri', opts.migrateUri);
  if (opts.autoConverge) options.push('--auto-converge');
  if (opts.tls) options.push('--tls');
  if (opts.unsafe) options.push('--unsafe');
  if (opts.copyStorage) options.push('--copy-storage-all');
  return virshCommand('migrate', options, [checkDomainName(name), destUri]);
}

/** The running job of a domain (`virsh domjobinfo`): empty when none. */
export async function jobInfo(uri: string, name: string): Promise<Record<string, string>> {
  return parseJobInfo(await virsh(uri, domainCommand('domjobinfo', name), 10_000));
}

/** Resumes a paused domain (one a migration cut short left paused). */
export async function resumeDomain(uri: string, name: string): Promise<void> {
  await virsh(uri, domainCommand('resume', name), 30_000);
}

/** Aborts the domain's running job (a migration): QEMU keeps the VM running where it was. */
export async function abortJob(uri: string, name: string): Promise<void> {
  await virsh(uri, domainCommand('domjobabort', name), 30_000);
}

function parseJobInfo(out: string): Record<string, string> {
  const info: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) info[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return info;
}

/** Statistics of the last completed job (libvirt keeps them on the destination of a migration too). */
export async function completedJob(uri: string, name: string): Promise<Record<string, string>> {
  return parseJobInfo(await virsh(uri, domainCommand('domjobinfo', name, ['--completed'])));
}

/**
 * The IPv4/IPv6 addresses libvirt knows for a running domain from `source`:
 * its DHCP leases (`lease`) or the host's neighbour table (`arp`). Empty when
 * libvirt knows none (no libvirt network, no lease yet).
 */
export async function domainAddresses(uri: string, name: string, source: 'lease' | 'arp'): Promise<string[]> {
  // Unanswered, or a name virsh cannot take: libvirt knows no address then, as the doc above says.
  const out = await Promise.resolve()
    .then(() => virsh(uri, domainCommand('domifaddr', name, ['--source', source]), 10_000))
    .catch(() => '');
  const addrs = new Set<string>();
  for (const line of out.split('\n')) {
    const m = /\s(ipv4|ipv6)\s+([0-9a-fA-F.:]+)\/\d+/.exec(line);
    if (m) addrs.add(m[2]!.toLowerCase());
  }
  return [...addrs].sort();
}
