import { ConnectListAllDomainsFlags, DomainState, Hypervisor } from '@unraid/libvirt';
import { UserError } from '../util/errors.js';
import { logger } from '../util/log.js';
import { DomainXmlError, readDomainXml, type DomainXml, type XmlInterface } from './domxml.js';

const log = logger('libvirt');

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

export type DomainInterface = XmlInterface;

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
  private constructor(
    readonly uri: string,
    private readonly hv: Hypervisor,
  ) {}

  static async connect(uri: string): Promise<LibvirtClient> {
    const hv = new Hypervisor({ uri });
    try {
      await hv.connectOpen();
    } catch (err) {
      throw new UserError(`cannot connect to libvirt at ${uri} (${(err as Error).message}): is libvirtd running, and is the URI right (agent.libvirtUri)?`);
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
      let name = '';
      try {
        // One call at a time: each holds a thread of Node's pool until libvirt answers, and a libvirtd
        // that hangs must not take the threads the agent's file writes need (agent/libvirt.ts).
        name = await this.hv.domainGetName(d);
        const uuid = await this.hv.domainGetUUIDString(d);
        const info = await this.hv.domainGetInfo(d);
        const xml = await this.hv.domainGetXMLDesc(d);
        const state = info.state === DomainState.RUNNING ? 'running' : info.state === DomainState.PAUSED ? 'paused' : 'other';
        const doc = readDomainXml(xml);
        out.push({ name, uuid, state, memoryKiB: info.memory, vcpus: info.nrVirtCpu, interfaces: doc.interfaces, ...policyOf(doc) });
      } catch (err) {
        // Gone meanwhile (it stopped), or XML libvirt would never write: the others are still read.
        if (err instanceof DomainXmlError) log.error({ err, vm: name }, `unreadable domain XML: this VM is not counted; look at virsh dumpxml -- '${name}'`);
      }
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }
}

/**
 * A VM's own say, in its domain metadata (set with `virsh metadata DOMAIN
 * http://virt-cohort.org/xmlns/libvirt/1 --key vc --set '<policy move="never"/>'`):
 * move="never" pins it (the manager never migrates it); count="no" opts it
 * out (its taps are not watched, and it is not moved either).
 */
export function policyOf(d: DomainXml): { pinned: boolean; optOut: boolean } {
  const optOut = d.policy?.get('count') === 'no';
  return { pinned: optOut || d.policy?.get('move') === 'never', optOut };
}
