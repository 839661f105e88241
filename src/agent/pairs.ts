import { pairMember } from '../collector/keys.js';
import type { FlowCounts } from '../sensor/layout.js';

export interface Pairs {
  /** [member, messages, bytes], each member once. */
  pairs: [string, number, number][];
  /** VMs with at least one count. */
  vms: Set<string>;
  /** Pairs beyond a VM's cap of peers that are not VMs, summed into its `*` peer (see foldPeers). */
  folded: number;
}

/**
 * At most this many peers that are not known VMs, per VM and direction, in one
 * period; the others (the smallest by bytes) are summed into one peer named
 * FOLDED. A VM that scans or is scanned by 100,000 addresses costs the same
 * as one with a thousand peers, in the report, in Redis and in the pair
 * dictionary, and every packet is still counted. Placement needs the heavy
 * peers: the folded tail is small by construction.
 */
export const MAX_PEERS_PER_VM = 1000;
/** The peer that stands for the folded tail (`vm>*`, `*>vm`); no address or ether type reads so. */
export const FOLDED = '*';

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
  const sums = new Map<string, [number, number]>();
  // Pairs whose peer is not a known VM, by the VM and direction they belong to: the ones foldPeers may fold.
  const tails = new Map<string, Set<string>>();
  for (const f of flows) {
    const vm = vmName(f.vm);
    vms.add(vm);
    const peerVm = addrs.get(f.peer);
    let member: string;
    if (f.dir === 'tx') member = pairMember(vm, peerVm ?? f.peer);
    else if (peerVm) continue;
    else member = pairMember(f.peer, vm);
    const s = sums.get(member);
    if (s) {
      s[0] += f.packets;
      s[1] += f.bytes;
    } else {
      sums.set(member, [f.packets, f.bytes]);
      if (peerVm) continue;
      const group = f.dir === 'tx' ? pairMember(vm, FOLDED) : pairMember(FOLDED, vm);
      let tail = tails.get(group);
      if (!tail) tails.set(group, (tail = new Set()));
      tail.add(member);
    }
  }
  return { ...foldPeers(sums, tails), vms };
}

/**
 * Keeps each VM's MAX_PEERS_PER_VM heaviest peers that are not VMs, per
 * direction (`tails`: the fold member, `vm>*` or `*>vm`, and the members that
 * may fold into it), and sums the rest into the fold member. Pairs between
 * VMs are never folded.
 */
function foldPeers(sums: Map<string, [number, number]>, tails: Map<string, Set<string>>): { pairs: [string, number, number][]; folded: number } {
  let folded = 0;
  for (const [group, members] of tails) {
    if (members.size <= MAX_PEERS_PER_VM) continue;
    const order = [...members].sort((x, y) => sums.get(y)![1] - sums.get(x)![1] || (x < y ? -1 : 1));
    const into: [number, number] = sums.get(group) ?? [0, 0];
    for (const m of order.slice(MAX_PEERS_PER_VM)) {
      const [p, b] = sums.get(m)!;
      into[0] += p;
      into[1] += b;
      sums.delete(m);
      folded++;
    }
    sums.set(group, into);
  }
  return { pairs: [...sums].map(([m, [p, b]]) => [m, p, b]), folded };
}
