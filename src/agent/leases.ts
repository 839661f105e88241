import type { DomainSnapshot } from '../libvirt/client.js';
import { domainAddresses } from '../libvirt/virsh.js';

/** How often a VM's DHCP leases and neighbour entries are asked of libvirt, and for how many VMs per reconcile. */
const EVERY_MS = 5 * 60_000;
const PER_REFRESH = 4;

/**
 * What libvirt's DHCP leases and neighbour table say of each VM (`virsh
 * domifaddr --source lease|arp`): one virsh per VM and source, so a few VMs
 * at a time, each every EVERY_MS, never holding up a reconcile.
 */
export class Leases {
  private known = new Map<string, string[]>();
  private asked = new Map<string, number>();
  private busy = false;

  constructor(private readonly uri: string) {}

  of(vm: string): string[] {
    return this.known.get(vm) ?? [];
  }

  /** Asks for the VMs that are due; forgets VMs no longer in `domains`. */
  async refresh(domains: DomainSnapshot[]): Promise<void> {
    if (this.busy || this.uri === '') return;
    this.busy = true;
    try {
      const now = Date.now();
      for (const d of domains.filter((x) => now - (this.asked.get(x.name) ?? 0) > EVERY_MS).slice(0, PER_REFRESH)) {
        this.asked.set(d.name, now);
        const found = [...(await domainAddresses(this.uri, d.name, 'lease')), ...(await domainAddresses(this.uri, d.name, 'arp'))];
        this.known.set(d.name, [...new Set(found)]);
      }
      const here = new Set(domains.map((d) => d.name));
      for (const m of [this.known, this.asked]) for (const name of [...m.keys()]) if (!here.has(name)) m.delete(name);
    } finally {
      this.busy = false;
    }
  }
}
