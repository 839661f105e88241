import { logger } from '../util/log.js';

const log = logger('addresses');

/** ARP-learned addresses kept per VM; more are ignored (a guest sending ARP from random addresses). */
export const MAX_LEARNED_PER_VM = 8;
/** A learned address not announced again for this long is forgotten (guests re-announce within minutes). */
export const LEARNED_TTL_MS = 30 * 60_000;
/** Spoofed claims remembered so each is logged once; beyond this, the oldest are forgotten. */
const MAX_REFUSED = 10_000;

/** Who holds an address cluster-wide (the directory's vc:addr), and whether that VM is still in the directory. */
export type Owners = Map<string, { vm: string; live: boolean }>;

/**
 * Which addresses are which VM's, on one host. Addresses libvirt knows for a
 * VM (its domain XML, DHCP leases, domifaddr) are trusted. An address a VM
 * announced in its own ARP frames counts only when no other VM claims it (on
 * this host, or in the cluster's directory), at most MAX_LEARNED_PER_VM per
 * VM, and only for LEARNED_TTL_MS after it was last announced. A guest that
 * announces another VM's address is ignored, and said once in the log: it
 * must not get that VM's traffic counted as its own.
 */
export class AddressBook {
  private trusted = new Map<string, Set<string>>();
  private learned = new Map<string, Map<string, number>>();
  private refused = new Set<string>();
  private full = new Set<string>();

  /** What libvirt knows of `vm` now: replaces what it knew before. */
  trust(vm: string, addrs: Iterable<string>): void {
    const set = new Set(addrs);
    if (set.size) this.trusted.set(vm, set);
    else this.trusted.delete(vm);
    // A trusted address is no longer anyone's by ARP.
    for (const [other, map] of this.learned) for (const a of set) if (other !== vm) map.delete(a);
  }

  /** The VMs of this host now: the others are forgotten (they left or stopped). */
  keepOnly(vms: Set<string>): void {
    for (const m of [this.trusted, this.learned]) for (const vm of [...m.keys()]) if (!vms.has(vm)) m.delete(vm);
  }

  /** ARP claims of one period (VM → addresses it announced); `owners` is the cluster's view. Returns what was accepted. */
  observe(claims: Map<string, Set<string>>, owners: Owners, now = Date.now()): Map<string, string[]> {
    const accepted = new Map<string, string[]>();
    for (const [vm, addrs] of claims) {
      for (const a of addrs) {
        const holder = this.holder(a, now) ?? liveOwner(owners, a);
        if (holder && holder !== vm) {
          this.refuse(vm, a, `it is ${holder}'s`);
          continue;
        }
        let map = this.learned.get(vm);
        if (!map) this.learned.set(vm, (map = new Map()));
        if (!map.has(a) && map.size >= MAX_LEARNED_PER_VM && !this.trusted.get(vm)?.has(a)) {
          if (!this.full.has(vm)) log.warn({ vm, max: MAX_LEARNED_PER_VM }, `${vm} announces more addresses than a VM may have learned (${MAX_LEARNED_PER_VM}): the others are ignored`);
          this.full.add(vm);
          continue;
        }
        map.set(a, now);
        accepted.set(vm, [...(accepted.get(vm) ?? []), a]);
      }
    }
    return accepted;
  }

  /** Every address of `vm` that counts now: trusted first, then learned and fresh. */
  of(vm: string, now = Date.now()): string[] {
    const out = new Set(this.trusted.get(vm) ?? []);
    for (const [a, at] of this.learned.get(vm) ?? []) if (now - at <= LEARNED_TTL_MS) out.add(a);
    return [...out].sort();
  }

  /** Address → VM for this host's VMs. */
  entries(now = Date.now()): Map<string, string> {
    const out = new Map<string, string>();
    for (const [vm, map] of this.learned) for (const [a, at] of map) if (now - at <= LEARNED_TTL_MS) out.set(a, vm);
    for (const [vm, set] of this.trusted) for (const a of set) out.set(a, vm);
    return out;
  }

  /** Forgets learned addresses not announced for LEARNED_TTL_MS; returns them by VM (to remove from the directory). */
  expire(now = Date.now()): Map<string, string[]> {
    const gone = new Map<string, string[]>();
    for (const [vm, map] of this.learned) {
      for (const [a, at] of map) {
        if (now - at <= LEARNED_TTL_MS) continue;
        map.delete(a);
        gone.set(vm, [...(gone.get(vm) ?? []), a]);
      }
      if (map.size < MAX_LEARNED_PER_VM) this.full.delete(vm);
    }
    return gone;
  }

  /** Learned addresses held, in all: bounded by MAX_LEARNED_PER_VM per VM. */
  get size(): number {
    let n = 0;
    for (const map of this.learned.values()) n += map.size;
    return n;
  }

  private holder(a: string, now: number): string | undefined {
    for (const [vm, set] of this.trusted) if (set.has(a)) return vm;
    for (const [vm, map] of this.learned) {
      const at = map.get(a);
      if (at !== undefined && now - at <= LEARNED_TTL_MS) return vm;
    }
    return undefined;
  }

  private refuse(vm: string, a: string, why: string): void {
    const k = `${vm} ${a}`;
    if (this.refused.has(k)) return;
    if (this.refused.size >= MAX_REFUSED) this.refused.delete(this.refused.values().next().value!);
    this.refused.add(k);
    log.warn({ vm, address: a }, `${vm} announced ${a} in its ARP frames, but ${why}: ignored (a spoofed or stale claim)`);
  }
}

function liveOwner(owners: Owners, a: string): string | undefined {
  const o = owners.get(a);
  return o?.live ? o.vm : undefined;
}
