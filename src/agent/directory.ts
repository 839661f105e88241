import type { Registry } from '../collector/registry.js';
import type { DomainSnapshot } from '../libvirt/client.js';
import { logger } from '../util/log.js';
import type { AddressBook } from './addresses.js';

const log = logger('directory');

/**
 * One host's part of the VM directory: its VMs' entries, with the addresses
 * its AddressBook gives them. A VM new to this agent (migrated in, started,
 * or every VM after the agent restarts) first takes over the addresses the
 * directory holds for it (AddressBook.carry): its previous host's entry is
 * not overwritten with an empty list until the VM's next ARP. A VM that left
 * is marked stopped only where the directory still places it here, and its
 * addresses stay: the VM may already hold them on its new host.
 */
export class HostDirectory {
  /** VMs whose entry this agent wrote since they arrived (their addresses carried over first). */
  private published = new Set<string>();

  constructor(
    readonly registry: Registry,
    readonly book: AddressBook,
    readonly host: string,
    readonly site: string,
  ) {}

  /** The VMs of this host now (every reconcile, Redis or not): the others are forgotten, and carried over again if they come back. */
  keepOnly(vms: Set<string>): void {
    this.book.keepOnly(vms);
    for (const name of [...this.published]) if (!vms.has(name)) this.published.delete(name);
  }

  /** Writes the entries of `domains` (libvirt's list now) and marks `gone` stopped; returns the VMs it marked. */
  async publish(domains: DomainSnapshot[], gone: string[], now = Date.now()): Promise<string[]> {
    this.keepOnly(new Set(domains.map((d) => d.name)));
    const arriving = domains.filter((d) => !this.published.has(d.name)).map((d) => d.name);
    if (arriving.length) {
      const held = await this.registry.heldAddresses(arriving);
      for (const name of arriving) {
        const addrs = held.get(name);
        if (!addrs) continue;
        const carried = this.book.carry(name, addrs, now);
        if (carried.length) log.info({ vm: name, addresses: carried }, 'addresses the directory held for the VM: carried over until it shows others');
      }
    }
    for (const d of domains) {
      const rec = {
        uuid: d.uuid,
        host: this.host,
        site: this.site,
        mac: d.interfaces.map((i) => i.mac).join(','),
        addresses: this.book.of(d.name, now),
        memoryKiB: d.memoryKiB,
        vcpus: d.vcpus,
        pinned: d.pinned,
        optOut: d.optOut,
        rules: d.rules ?? '',
      };
      // Paused here while running elsewhere is an incoming migration: the directory moves once it runs here.
      // Its addresses are carried over again then (the source may learn more until it hands over).
      if (d.state === 'paused') {
        const where = await this.registry.vmHost(d.name);
        if (where && where !== this.host) continue;
        await this.registry.putVm(d.name, { ...rec, state: 'arriving' }, now);
      } else {
        await this.registry.putVm(d.name, { ...rec, state: 'running' }, now);
      }
      this.published.add(d.name);
    }
    for (const [vm, addrs] of this.book.expire(now)) {
      await this.registry.dropAddresses(vm, addrs);
      log.info({ vm, addresses: addrs }, 'addresses not announced again, or replaced by others the VM shows: forgotten');
    }
    const left: string[] = [];
    for (const name of gone) if (await this.registry.vmGone(name, this.host, now)) left.push(name);
    return left;
  }
}
