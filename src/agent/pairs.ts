import { pairMember } from '../collector/keys.js';
import type { FlowCounts } from '../sensor/layout.js';

export interface Pairs {
  /** [member, messages, bytes], each member once. */
  pairs: [string, number, number][];
  /** VMs with at least one count. */
  vms: Set<string>;
}

/**
 * VM name → the IPv4 addresses it announced as sender in its own ARP frames
 * this reading: claims only, which the agent's AddressBook accepts or refuses
 * (a guest may announce another VM's address).
 */
export function arpClaims(flows: FlowCounts[], vmName: (id: number) => string): Map<string, Set<string>> {
  const claims = new Map<string, Set<string>>();
  for (const f of flows) {
    if (!f.arpSender || f.dir !== 'tx') continue;
    const name = vmName(f.vm);
    let set = claims.get(name);
    if (!set) claims.set(name, (set = new Set()));
    set.add(f.arpSender);
  }
  return claims;
}

/**
 * Turns one reading into directed pairs. What a VM sent is counted by its own
 * host (`vm>peer`); what it received is kept only from peers that are not
 * known VMs (`peer>vm`), because a known VM's host already counts it as sent:
 * keeping both would count each message twice. Peers are named by VM when
 * `addrs` knows their address, by address otherwise (the collector renames
 * them later if the address becomes known). `addrs` holds only addresses the
 * agent accepted: a claim in this reading's ARP frames never renames a peer.
 */
export function toPairs(flows: FlowCounts[], vmName: (id: number) => string, addrs: Map<string, string>): Pairs {
  const vms = new Set<string>();
  const known = addrs;
  const sums = new Map<string, [number, number]>();
  for (const f of flows) {
    const vm = vmName(f.vm);
    vms.add(vm);
    const peerVm = known.get(f.peer);
    let member: string;
    if (f.dir === 'tx') member = pairMember(vm, peerVm ?? f.peer);
    else if (peerVm) continue;
    else member = pairMember(f.peer, vm);
    const s = sums.get(member);
    if (s) {
      s[0] += f.packets;
      s[1] += f.bytes;
    } else sums.set(member, [f.packets, f.bytes]);
  }
  return { pairs: [...sums].map(([m, [p, b]]) => [m, p, b]), vms };
}
