import { ConnectListAllDomainsFlags, DomainState, Hypervisor } from '@unraid/libvirt';
import { UserError } from '../util/errors.js';

/** What the agent needs to know of one active domain. */
export interface DomainSnapshot {
  name: string;
  uuid: string;
  /** running, or paused (an incoming migration is paused until it completes). */
  state: 'running' | 'paused' | 'other';
  memoryKiB: number;
  vcpus: number;
  interfaces: DomainInterface[];
  /** From the domain's metadata (see parsePolicy): never migrated; not counted at all. */
  pinned: boolean;
  optOut: boolean;
}

export interface DomainInterface {
  mac: string;
  /** The host-side tap (vnetN); absent while the domain is not running. */
  tap?: string;
  /** Addresses written in the domain XML (`<ip address=…/>`), if any. */
  addresses: string[];
}

export interface NodeSnapshot {
  hostname: string;
  cpus: number;
  memoryKiB: number;
  mhz: number;
}

/**
 * The read side of libvirt, through the native binding @unraid/libvirt
 * (domains, XML, node info). Migration and job control are not in that
 * binding: they stay with virsh (src/libvirt/virsh.ts).
 */
export class LibvirtClient {
  private constructor(readonly uri: string, private readonly hv: Hypervisor) {}

  static async connect(uri: string): Promise<LibvirtClient> {
    const hv = new Hypervisor({ uri });
    try {
      await hv.connectOpen();
    } catch (err) {
      throw new UserError(`cannot connect to libvirt at ${uri} (${(err as Error).message}): is libvirtd running, and is the URI right (--libvirt-uri)?`);
    }
    return new LibvirtClient(uri, hv);
  }

  async close(): Promise<void> {
    await this.hv.connectClose().catch(() => undefined);
  }

  async node(): Promise<NodeSnapshot> {
    const info = await this.hv.nodeGetInfo();
    return { hostname: await this.hv.connectGetHostname(), cpus: info.cpus, memoryKiB: info.memory, mhz: info.mhz };
  }

  /** Every active domain. A domain that vanishes while being read is skipped (it stopped meanwhile). */
  async domains(): Promise<DomainSnapshot[]> {
    const list = await this.hv.connectListAllDomains(ConnectListAllDomainsFlags.ACTIVE);
    const out: DomainSnapshot[] = [];
    for (const d of list) {
      try {
        const [name, uuid, info, xml] = await Promise.all([
          this.hv.domainGetName(d), this.hv.domainGetUUIDString(d), this.hv.domainGetInfo(d), this.hv.domainGetXMLDesc(d),
        ]);
        const state = info.state === DomainState.RUNNING ? 'running' : info.state === DomainState.PAUSED ? 'paused' : 'other';
        out.push({ name, uuid, state, memoryKiB: info.memory, vcpus: info.nrVirtCpu, interfaces: parseInterfaces(xml), ...parsePolicy(xml) });
      } catch {
        continue;
      }
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }
}

/** The XML namespace of virt-cohort's element in a domain's <metadata>. */
export const POLICY_NS = 'http://virt-cohort.org/xmlns/libvirt/1';

/**
 * A VM's own say, in its domain metadata (set with `virsh metadata DOMAIN
 * http://virt-cohort.org/xmlns/libvirt/1 --key vc --set '<policy move="never"/>'`):
 * move="never" pins it (the manager never migrates it); count="no" opts it
 * out (its taps are not watched, and it is not moved either).
 */
export function parsePolicy(xml: string): { pinned: boolean; optOut: boolean } {
  const meta = /<metadata>([\s\S]*?)<\/metadata>/.exec(xml)?.[1] ?? '';
  const prefix = new RegExp(`xmlns:(\\w+)=['"]${POLICY_NS.replace(/[.\/]/g, '\\$&')}['"]`).exec(meta)?.[1];
  if (!prefix) return { pinned: false, optOut: false };
  const el = new RegExp(`<${prefix}:policy\\b([^>]*)>`).exec(meta)?.[1] ?? '';
  const optOut = /\bcount=['"]no['"]/.test(el);
  return { pinned: optOut || /\bmove=['"]never['"]/.test(el), optOut };
}

/** The interfaces of a domain XML: MAC, tap and any addresses libvirt knows. */
export function parseInterfaces(xml: string): DomainInterface[] {
  const out: DomainInterface[] = [];
  for (const m of xml.matchAll(/<interface\b[\s\S]*?<\/interface>/g)) {
    const block = m[0];
    const mac = /<mac\s+address=['"]([0-9a-fA-F:]{17})['"]/.exec(block)?.[1]?.toLowerCase();
    if (!mac) continue;
    const tap = /<target\s+dev=['"]([^'"]{1,15})['"]/.exec(block)?.[1];
    const addresses = [...block.matchAll(/<ip\s+address=['"]([0-9a-fA-F.:]+)['"]/g)].map((a) => a[1]!);
    out.push(tap ? { mac, tap, addresses } : { mac, addresses });
  }
  return out;
}
