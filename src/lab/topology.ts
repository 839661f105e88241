import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { labDir } from './state.js';

/**
 * The lab's names and addresses, derived from a few settings so that every
 * command (up, status, down, vm ...) finds the same objects without guessing.
 *
 * Addresses live in 10.<index>.0.0/16, one /16 per lab:
 *   10.L.0.0/24    management network: root namespace .254, host k at .k
 *                  (libvirt's qemu+tls:// control and the lab's Redis)
 *   10.L.s.0/24    data network of site s (s = 1, 2, ...): the wan router .254,
 *                  host k at .k; VXLAN and migration streams use it, so they
 *                  cross the shaped inter-site link like real traffic would
 *   10.L.200.0/24  the VM overlay (VXLAN across every host): VM i at .i
 */
export interface LabSettings {
  name: string;
  index: number;
  sites: number;
  hostsPerSite: number;
  /** One-way delay added between two sites, in ms. */
  delayMs: number;
  /** Inter-site bandwidth, in Mbit/s. */
  rateMbit: number;
  redisPort: number;
}

export interface LabHost {
  name: string;
  site: string;
  siteIndex: number;
  /** Global host number k (1-based); the last octet of its addresses. */
  number: number;
  netns: string;
  mgmtIp: string;
  dataIp: string;
  uri: string;
  /** Root-namespace end of the management veth. */
  mgmtVeth: string;
}

export const LAB_NAME_RE = /^[a-z][a-z0-9]{0,5}$/;
export const VM_NETWORK_OCTET = 200;
export const VXLAN_ID = 4200;
export const VM_BRIDGE = 'vmbr';
export const SITE_LETTERS = 'abcdefgh';

export function validateName(name: string): string {
  if (!LAB_NAME_RE.test(name)) {
    throw new UserError(
      `lab name '${name}' is not valid: use 1 to 6 lowercase letters or digits, starting with a letter (e.g. --name lab2). ` +
        'It prefixes every interface name, and Linux limits those to 15 characters.',
    );
  }
  return name;
}

export function prefix(name: string): string {
  return `vc-${name}`;
}

export function siteName(s: number): string {
  return SITE_LETTERS[s - 1]!;
}

export function hosts(lab: LabSettings): LabHost[] {
  const out: LabHost[] = [];
  const p = prefix(lab.name);
  let k = 0;
  for (let s = 1; s <= lab.sites; s++) {
    for (let h = 1; h <= lab.hostsPerSite; h++) {
      k++;
      const name = `${siteName(s)}${h}`;
      const mgmtIp = `10.${lab.index}.0.${k}`;
      out.push({
        name,
        site: siteName(s),
        siteIndex: s,
        number: k,
        netns: `${p}-${name}`,
        mgmtIp,
        dataIp: `10.${lab.index}.${s}.${k}`,
        // TLS with the lab's client certificate (src/lab/pki.ts).
        uri: `qemu+tls://${mgmtIp}/system?pkipath=${join(labDir(lab.name), 'pki', 'client')}`,
        mgmtVeth: `${p}-${name}m`,
      });
    }
  }
  return out;
}

export function findHost(lab: LabSettings, name: string): LabHost {
  const host = hosts(lab).find((h) => h.name === name);
  if (!host) {
    throw new UserError(
      `no host '${name}' in lab '${lab.name}': its hosts are ${hosts(lab)
        .map((h) => h.name)
        .join(', ')} (see virt-cohort lab status)`,
    );
  }
  return host;
}

/** The host of the i-th guest (from 1) when guests are spread over the sites in turn: vm1 on a1, vm2 on b1, vm3 on a2 ... */
export function spreadHost(lab: LabSettings, i: number): LabHost {
  const j = i - 1;
  const site = (j % lab.sites) + 1;
  const inSite = Math.floor(j / lab.sites) % lab.hostsPerSite;
  return hosts(lab).find((h) => h.siteIndex === site && h.name === `${h.site}${inSite + 1}`)!;
}

/** Where migrations into a lab host send memory: its data address (agents register it; the lab's manager vouches for it). */
export const labMigrateUri = (h: LabHost) => `tcp://${h.dataIp}`;
export const wanNetns = (lab: LabSettings) => `${prefix(lab.name)}-wan`;
export const mgmtBridge = (lab: LabSettings) => `${prefix(lab.name)}-m`;
export const rootIp = (lab: LabSettings) => `10.${lab.index}.0.254`;
export const routerIp = (lab: LabSettings, s: number) => `10.${lab.index}.${s}.254`;
export const siteBridge = (s: number) => `site-${siteName(s)}`;
export const vmIp = (lab: LabSettings, i: number) => `10.${lab.index}.${VM_NETWORK_OCTET}.${i}`;
export const domainName = (lab: LabSettings, vm: string) => `${prefix(lab.name)}-${vm}`;
/** Locally administered MAC carrying the lab index and VM index, so MACs never collide across labs. */
export const vmMac = (lab: LabSettings, i: number) => `52:54:00:${hex(lab.index)}:${hex(i >> 8)}:${hex(i & 0xff)}`;
const hex = (n: number) => n.toString(16).padStart(2, '0');

export const MAX_SITES = SITE_LETTERS.length;
export const MAX_HOSTS_PER_SITE = 9;
export const MAX_VMS = 250;

export function checkShape(sites: number, hostsPerSite: number): void {
  if (!Number.isInteger(sites) || sites < 1 || sites > MAX_SITES) {
    throw new UserError(`--sites must be an integer from 1 to ${MAX_SITES} (got ${sites})`);
  }
  if (!Number.isInteger(hostsPerSite) || hostsPerSite < 1 || hostsPerSite > MAX_HOSTS_PER_SITE) {
    throw new UserError(`--hosts-per-site must be an integer from 1 to ${MAX_HOSTS_PER_SITE} (got ${hostsPerSite})`);
  }
}
