import { logger } from '../util/log.js';

const log = logger('addresses');

/** ARP-learned addresses kept per VM; more are ignored (a guest sending ARP from random addresses). */
export const MAX_LEARNED_PER_VM = 8;
/** A learned address not announced again for this long is forgotten (guests re-announce within minutes). */
export const LEARNED_TTL_MS = 30 * 60_000;
/** Spoofed claims remembered so each is logged once; beyond this, the oldest are forgotten. */
const MAX_REFUSED = 10_000;

/** Who holds an address cluster-wide (the directory's vc:{vc}:addr), and whether that VM is still in the directory. */
export type Owners = Map<string, { vm: string; live: boolean }>;

/**
 * Which addresses are which VM's, on one host. Addresses libvirt knows for a
 * VM (its domain XML, DHCP leases, domifaddr) are trusted. An address a VM
 * announced in its own ARP frames counts only when no other VM claims it (on
 * this host, or in the cluster's directory), at most MAX_LEARNED_PER_VM per
 * VM, and only for LEARNED_TTL_MS after it was last announced. A guest that
 * announces another VM's address is ignored, and said once in the log: it
 * must not get that VM's traffic counted as its own.
 *
 * A VM that arrives on this host (a migration, or the agent restarting)
 * brings the addresses the directory held for it (carry): they count as if
 * announced on arrival, until the VM shows a different address of the same
 * family (in its ARP, or libvirt's data) or LEARNED_TTL_MS passes without it
 * announcing them again, under the same rules and cap as learned ones.
 */
export class AddressBook {
  private trusted = new Map<string, Set<string>>();
  private learned = new Map<string, Map<string, number>>();
  private carried = new Map<string, Carried>();
  /** Carried addresses the VM no longer shows, to remove from the directory at the next expire(). */
  private released = new Map<string, Set<string>>();
  private refused = new Set<string>();
  private full = new Set<string>();

  /** What libvirt knows of `vm` now: replaces what it knew before. */
  trust(vm: string, addrs: Iterable<string>): void {
    const set = new Set(addrs);
    if (set.size) this.trusted.set(vm, set);
    else this.trusted.delete(vm);
    // A trusted address is no longer anyone's by ARP, nor carried for another VM.
    for (const [other, map] of this.learned) for (const a of set) if (other !== vm) map.delete(a);
    for (const [other, c] of this.carried) for (const a of set) if (other !== vm) c.held.delete(a);
    this.shows(vm, set);
  }

  /**
   * The addresses the directory held for `vm` (its entry, as its previous host
   * or this agent before a restart wrote it) when it arrived here: carried over,
   * replacing what was carried before. Not taken: an address another VM of this
   * host holds, one of a family in which the VM already shows a different
   * address, and more than MAX_LEARNED_PER_VM. Returns what is carried.
   */
  carry(vm: string, addrs: Iterable<string>, now = Date.now()): string[] {
    const basis = new Set(addrs);
    const differs = this.differing(vm, basis, now);
    const held = new Set<string>();
    for (const a of basis) {
      const holder = this.holder(a, now, vm);
      if (holder) {
        log.warn({ vm, address: a, holder }, `the directory had ${a} for ${vm}, but ${holder} holds it on this host: not carried over`);
        continue;
      }
      if (differs.has(family(a)) || this.learned.get(vm)?.has(a)) continue;
      if (held.size >= MAX_LEARNED_PER_VM) break;
      held.add(a);
    }
    if (held.size) this.carried.set(vm, { basis, since: now, held });
    else this.carried.delete(vm);
    return [...held].sort();
  }

  /** The VMs of this host now: the others are forgotten (they left or stopped). */
  keepOnly(vms: Set<string>): void {
    for (const m of [this.trusted, this.learned, this.carried, this.released]) for (const vm of [...m.keys()]) if (!vms.has(vm)) m.delete(vm);
  }

  /** ARP claims of one period (VM → addresses it announced); `owners` is the cluster's view. Returns what was accepted. */
  observe(claims: Map<string, Set<string>>, owners: Owners, now = Date.now()): Map<string, string[]> {
    const accepted = new Map<string, string[]>();
    for (const [vm, addrs] of claims) {
      const own: string[] = [];
      for (const a of addrs) {
        const holder = this.holder(a, now) ?? liveOwner(owners, a);
        if (holder && holder !== vm) this.refuse(vm, a, `it is ${holder}'s`);
        else own.push(a);
      }
      // What the VM announces as its own replaces what it carried of that family.
      this.shows(vm, own);
      const carried = this.carried.get(vm)?.held;
      for (const a of own) {
        let map = this.learned.get(vm);
        if (!map) this.learned.set(vm, (map = new Map()));
        if (!map.has(a) && !carried?.has(a) && map.size + (carried?.size ?? 0) >= MAX_LEARNED_PER_VM && !this.trusted.get(vm)?.has(a)) {
          if (!this.full.has(vm)) log.warn({ vm, max: MAX_LEARNED_PER_VM }, `${vm} announces more addresses than a VM may have learned (${MAX_LEARNED_PER_VM}): the others are ignored`);
          this.full.add(vm);
          continue;
        }
        map.set(a, now);
        carried?.delete(a); // learned now: its own clock
        this.released.get(vm)?.delete(a);
        accepted.set(vm, [...(accepted.get(vm) ?? []), a]);
      }
    }
    return accepted;
  }

  /** Every address of `vm` that counts now: trusted first, then learned and carried, fresh. */
  of(vm: string, now = Date.now()): string[] {
    const out = new Set(this.trusted.get(vm) ?? []);
    for (const [a, at] of this.learned.get(vm) ?? []) if (now - at <= LEARNED_TTL_MS) out.add(a);
    const c = this.carried.get(vm);
    if (c && now - c.since <= LEARNED_TTL_MS) for (const a of c.held) out.add(a);
    return [...out].sort();
  }

  /** Address → VM for this host's VMs. */
  entries(now = Date.now()): Map<string, string> {
    const out = new Map<string, string>();
    for (const [vm, c] of this.carried) if (now - c.since <= LEARNED_TTL_MS) for (const a of c.held) out.set(a, vm);
    for (const [vm, map] of this.learned) for (const [a, at] of map) if (now - at <= LEARNED_TTL_MS) out.set(a, vm);
    for (const [vm, set] of this.trusted) for (const a of set) out.set(a, vm);
    return out;
  }

  /**
   * Forgets learned and carried addresses not announced for LEARNED_TTL_MS, and
   * carried ones the VM no longer shows; returns them by VM (to remove from the directory).
   */
  expire(now = Date.now()): Map<string, string[]> {
    const gone = new Map<string, string[]>();
    const add = (vm: string, a: string) => gone.set(vm, [...(gone.get(vm) ?? []), a]);
    for (const [vm, map] of this.learned) {
      for (const [a, at] of map) {
        if (now - at <= LEARNED_TTL_MS) continue;
        map.delete(a);
        if (!this.trusted.get(vm)?.has(a)) add(vm, a);
      }
    }
    for (const [vm, c] of this.carried) {
      if (now - c.since > LEARNED_TTL_MS) for (const a of c.held) if (!this.counts(vm, a, now)) add(vm, a);
      if (now - c.since > LEARNED_TTL_MS || !c.held.size) this.carried.delete(vm);
    }
    // A replaced address libvirt still lists (or the VM announced again) stays until it no longer counts.
    for (const [vm, set] of this.released) {
      for (const a of set) {
        if (this.counts(vm, a, now)) continue;
        set.delete(a);
        add(vm, a);
      }
      if (!set.size) this.released.delete(vm);
    }
    for (const vm of this.full) if ((this.learned.get(vm)?.size ?? 0) + (this.carried.get(vm)?.held.size ?? 0) < MAX_LEARNED_PER_VM) this.full.delete(vm);
    return gone;
  }

  /** Learned and carried addresses held, in all: bounded by MAX_LEARNED_PER_VM per VM. */
  get size(): number {
    let n = 0;
    for (const map of this.learned.values()) n += map.size;
    for (const c of this.carried.values()) n += c.held.size;
    return n;
  }

  /** Who holds `a` on this host (other than `except`). */
  private holder(a: string, now: number, except?: string): string | undefined {
    for (const [vm, set] of this.trusted) if (vm !== except && set.has(a)) return vm;
    for (const [vm, map] of this.learned) {
      const at = map.get(a);
      if (vm !== except && at !== undefined && now - at <= LEARNED_TTL_MS) return vm;
    }
    for (const [vm, c] of this.carried) if (vm !== except && c.held.has(a) && now - c.since <= LEARNED_TTL_MS) return vm;
    return undefined;
  }

  /** Whether `a` counts for `vm` now (trusted, or learned or carried and fresh). */
  private counts(vm: string, a: string, now: number): boolean {
    const at = this.learned.get(vm)?.get(a);
    const c = this.carried.get(vm);
    return Boolean(this.trusted.get(vm)?.has(a) || (at !== undefined && now - at <= LEARNED_TTL_MS) || (c?.held.has(a) && now - c.since <= LEARNED_TTL_MS));
  }

  /** The families in which `vm` shows (trusted, or learned and fresh) an address outside `addrs`. */
  private differing(vm: string, addrs: Set<string>, now: number): Set<string> {
    const out = new Set<string>();
    for (const a of this.trusted.get(vm) ?? []) if (!addrs.has(a)) out.add(family(a));
    for (const [a, at] of this.learned.get(vm) ?? []) if (now - at <= LEARNED_TTL_MS && !addrs.has(a)) out.add(family(a));
    return out;
  }

  /**
   * `vm` shows `addrs` as its own (its ARP, or libvirt): a carried address is
   * dropped when the VM shows an address of its family the directory did not
   * know for it (it has a different one now).
   */
  private shows(vm: string, addrs: Iterable<string>): void {
    const c = this.carried.get(vm);
    if (!c) return;
    const shown = new Set(addrs);
    const different = new Set([...shown].filter((a) => !c.basis.has(a)).map(family));
    for (const a of [...c.held]) {
      if (!shown.has(a) && different.has(family(a))) {
        c.held.delete(a);
        let r = this.released.get(vm);
        if (!r) this.released.set(vm, (r = new Set()));
        r.add(a);
        log.info({ vm, address: a }, `${vm} shows another address than ${a}, which the directory had for it when it arrived: ${a} forgotten`);
      }
    }
  }

  private refuse(vm: string, a: string, why: string): void {
    const k = `${vm} ${a}`;
    if (this.refused.has(k)) return;
    if (this.refused.size >= MAX_REFUSED) this.refused.delete(this.refused.values().next().value!);
    this.refused.add(k);
    log.warn({ vm, address: a }, `${vm} announced ${a} in its ARP frames, but ${why}: ignored (a spoofed or stale claim)`);
  }
}

/** What a VM brought from the directory when it arrived: what the directory held (basis), since when, and what still counts (held). */
interface Carried {
  basis: Set<string>;
  since: number;
  held: Set<string>;
}

const family = (a: string) => (a.includes(':') ? 'ipv6' : 'ipv4');

function liveOwner(owners: Owners, a: string): string | undefined {
  const o = owners.get(a);
  return o?.live ? o.vm : undefined;
}
