import { run } from '../util/exec.js';
import { VM_BRIDGE, VXLAN_ID, hosts, mgmtBridge, prefix, rootIp, routerIp, siteBridge, wanNetns, type LabHost, type LabSettings } from './topology.js';

/** Room for the 50-byte VXLAN header so VMs keep a normal 1500-byte MTU. */
const UNDERLAY_MTU = '1600';

const ip = (args: string[], netns?: string) => run('ip', netns ? ['-n', netns, ...args] : args);

/**
 * Builds the lab's wires:
 * - a management bridge in the root namespace joining every host (control, Redis);
 * - a "wan" namespace that routes between the sites' data networks; the qdisc on
 *   each site bridge there is the inter-site link: everything entering a site
 *   from another site waits `delayMs` and shares `rateMbit`, while traffic
 *   inside a site is bridged and never touches it;
 * - in each host a VM bridge, joined to every other host's by a VXLAN overlay
 *   over the data network, so a VM keeps its address wherever it runs.
 */
export async function createNetwork(lab: LabSettings): Promise<void> {
  const wan = wanNetns(lab);
  await ip(['netns', 'add', wan]);
  await ip(['link', 'set', 'lo', 'up'], wan);
  await run('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1'], { netns: wan });
  await bridgedFramesSkipIptables(wan);

  const mgmt = mgmtBridge(lab);
  await ip(['link', 'add', mgmt, 'type', 'bridge']);
  await ip(['addr', 'add', `${rootIp(lab)}/24`, 'dev', mgmt]);
  await ip(['link', 'set', mgmt, 'up']);

  for (let s = 1; s <= lab.sites; s++) {
    const br = siteBridge(s);
    await ip(['link', 'add', br, 'mtu', UNDERLAY_MTU, 'type', 'bridge'], wan);
    await ip(['addr', 'add', `${routerIp(lab, s)}/24`, 'dev', br], wan);
    await ip(['link', 'set', br, 'up'], wan);
    await shapeSite(lab, s);
  }

  const all = hosts(lab);
  await Promise.all(all.map((h) => createHostNetwork(lab, h, all)));
}

/**
 * Bandwidth of the link into site s. This kernel has no netem, so the delay is
 * added by a user-space delay line on the router's FORWARD hook (wan.ts); the
 * token bucket here caps the rate, its burst is 10 ms worth of traffic.
 */
async function shapeSite(lab: LabSettings, s: number): Promise<void> {
  const burst = Math.max(32_000, Math.ceil((lab.rateMbit * 1e6) / 8 / 100));
  await run('tc', ['qdisc', 'add', 'dev', siteBridge(s), 'root', 'tbf', 'rate', `${lab.rateMbit}mbit`, 'burst', String(burst), 'latency', '100ms'], { netns: wanNetns(lab) });
}

async function createHostNetwork(lab: LabSettings, h: LabHost, all: LabHost[]): Promise<void> {
  const ns = h.netns;
  await ip(['netns', 'add', ns]);
  await ip(['link', 'set', 'lo', 'up'], ns);
  await bridgedFramesSkipIptables(ns);

  await ip(['link', 'add', h.mgmtVeth, 'type', 'veth', 'peer', 'name', 'mgmt', 'netns', ns]);
  await ip(['link', 'set', h.mgmtVeth, 'master', mgmtBridge(lab), 'up']);
  await ip(['addr', 'add', `${h.mgmtIp}/24`, 'dev', 'mgmt'], ns);
  await ip(['link', 'set', 'mgmt', 'up'], ns);

  await ip(['link', 'add', 'data', 'mtu', UNDERLAY_MTU, 'type', 'veth', 'peer', 'name', h.name, 'mtu', UNDERLAY_MTU, 'netns', wanNetns(lab)], ns);
  await ip(['link', 'set', h.name, 'master', siteBridge(h.siteIndex), 'up'], wanNetns(lab));
  await ip(['addr', 'add', `${h.dataIp}/24`, 'dev', 'data'], ns);
  await ip(['link', 'set', 'data', 'up'], ns);
  // Other sites' data networks are reached through the wan router.
  await ip(['route', 'add', `10.${lab.index}.0.0/16`, 'via', routerIp(lab, h.siteIndex), 'dev', 'data'], ns);

  await ip(['link', 'add', VM_BRIDGE, 'type', 'bridge'], ns);
  await ip(['link', 'set', VM_BRIDGE, 'up'], ns);
  await ip(['link', 'add', 'vx0', 'type', 'vxlan', 'id', String(VXLAN_ID), 'local', h.dataIp, 'dstport', '4789'], ns);
  await ip(['link', 'set', 'vx0', 'master', VM_BRIDGE, 'up'], ns);
  // Head-end replication: broadcasts (ARP) go to every other host; unicast
  // destinations are learned, and relearned from QEMU's announce after a migration.
  for (const other of all) {
    if (other.name === h.name) continue;
    await run('bridge', ['fdb', 'append', '00:00:00:00:00:00', 'dev', 'vx0', 'dst', other.dataIp], { netns: ns });
  }
}

/**
 * With br_netfilter built in, bridged frames would cross iptables' FORWARD
 * chain too, so traffic inside a site would queue on the WAN delay line.
 * The setting is per network namespace.
 */
async function bridgedFramesSkipIptables(netns: string): Promise<void> {
  const keys = ['iptables', 'ip6tables', 'arptables'].map((t) => `net.bridge.bridge-nf-call-${t}=0`);
  await run('sysctl', ['-q', '-w', ...keys], { netns });
}

/** Every root-namespace link whose name carries the lab's prefix. */
export async function rootLinks(name: string): Promise<string[]> {
  const out = await run('ip', ['-o', 'link', 'show']);
  const p = `${prefix(name)}-`;
  return out
    .split('\n')
    .map((line) => line.split(': ')[1]?.split('@')[0] ?? '')
    .filter((n) => n.startsWith(p));
}

/** Every network namespace whose name carries the lab's prefix. */
export async function labNetns(name: string): Promise<string[]> {
  const out = await run('ip', ['netns', 'list']);
  const p = `${prefix(name)}-`;
  return out
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(p));
}

/** The rate into site s as the kernel has it, e.g. "rate 100Mbit". */
export async function siteRate(lab: LabSettings, s: number): Promise<string> {
  const out = await run('tc', ['qdisc', 'show', 'dev', siteBridge(s)], { netns: wanNetns(lab) });
  const m = /tbf .*?(rate \S+)/.exec(out);
  return m ? m[1]! : 'not shaped';
}
