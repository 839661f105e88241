import { pairMember } from '../collector/keys.js';
import type { FlowCounts } from '../sensor/layout.js';

export interface Pairs {
  /** [member, messages, bytes], each member once. */
  pairs: [string, number, number][];
  /** VM name → IPv4 addresses it announced in its own ARP frames. */
  learned: Map<string, Set<string>>;
  /** VMs with at least one count. */
  vms: Set<string>;
}

/**
 * Turns one reading into directed pairs. What a VM sent is counted by its own
 * host (`vm>peer`); what it received is kept only from peers that are not
 * known VMs (`peer>vm`), because a known VM's host already counts it as sent:
 * keeping both would count each message twice. Peers are named by VM when
 * `addrs` knows their address, by address otherwise (the collector renames
 * them later if the address becomes known).
 */
export function toPairs(flows: FlowCounts[], vmName: (id: number) => string, addrs: Map<string, string>): Pairs {
  const learned = new Map<string, Set<string>>();
  const vms = new Set<string>();
  for (const f of flows) {
    if (f.arpSender && f.dir === 'tx') {
      const name = vmName(f.vm);
      let set = learned.get(name);
      if (!set) learned.set(name, (set = new Set()));
      set.add(f.arpSender);
    }
  }
  const known = new Map(addrs);
  for (const [vm, set] of learned) for (const a of set) known.set(a, vm);

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
  return { pairs: [...sums].map(([m, [p, b]]) => [m, p, b]), learned, vms };
}
