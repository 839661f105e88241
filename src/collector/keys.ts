/**
 * The Redis schema, in one place (README, "Redis schema", shows each key with
 * redis-cli). A period is named by its start in Unix seconds; a pair member is
 * `SRC>DST`, each side a VM name, or a peer address when the peer is not a
 * known VM (a file server, an external user), or `ether:0xNNNN` for frames that
 * are not IP. Pairs are directed: `a>b` is what a sent to b.
 */
export const K = {
  /** SET of host names that ever registered. */
  hosts: 'vc:hosts',
  /** HASH: site, uri, cpus, memoryKiB, freeMemoryKiB, vms, sensor, periodSeconds, firstSeen, lastSeen (ms). */
  host: (h: string) => `vc:host:${h}`,
  /** SET of VM names in the directory. */
  vms: 'vc:vms',
  /** HASH: uuid, host, site, state (running|arriving|stopped), mac, addresses, memoryKiB, vcpus, since (ms). */
  vm: (name: string) => `vc:vm:${name}`,
  /** HASH: address → VM name, learned from libvirt XML and from the ARP a VM sends. */
  addr: 'vc:addr',
  /** ZSET of periods with at least one report: member and score are the period start. */
  periods: 'vc:periods',
  /** SET of hosts whose report for the period has been applied (the exactly-once guard). */
  reported: (p: number) => `vc:period:${p}:reported`,
  /** ZSET pair → messages (or bytes) for the period, all hosts summed. */
  msgs: (p: number) => `vc:period:${p}:msgs`,
  bytes: (p: number) => `vc:period:${p}:bytes`,
  /** ZSET pair → messages (or bytes): one host's report, kept to estimate a late host from the period before. */
  hostMsgs: (p: number, h: string) => `vc:period:${p}:host:${h}:msgs`,
  hostBytes: (p: number, h: string) => `vc:period:${p}:host:${h}:bytes`,
  /** HASH host → JSON of the report's summary (at, from, flows, overflow, unknownTap, vms). */
  meta: (p: number) => `vc:period:${p}:meta`,
  /** STREAM of hook and lifecycle events. */
  events: 'vc:events',
  /** HASH of cluster-wide settings: periodSeconds, retention. */
  settings: 'vc:settings',
  /** STRING: the active manager's id, with an expiry (the leader lock). */
  managerLock: 'vc:manager:lock',
  /** HASH per VM: count and until (ms) of its migration cooldown. */
  cooldown: (vm: string) => `vc:cooldown:${vm}`,
  /** STREAM of every migration: vm, from, to, outcome, seconds, downtimeMs, dataMiB, reason, error. */
  migrations: 'vc:migrations',
} as const;

export const EVENTS_MAXLEN = 100_000;

export function pairMember(src: string, dst: string): string {
  return `${src}>${dst}`;
}

export function splitPair(member: string): [string, string] {
  const i = member.indexOf('>');
  return i < 0 ? [member, ''] : [member.slice(0, i), member.slice(i + 1)];
}

/** Every key of one period, for retention. */
export function periodKeys(p: number, hosts: string[]): string[] {
  return [K.reported(p), K.msgs(p), K.bytes(p), K.meta(p), ...hosts.flatMap((h) => [K.hostMsgs(p, h), K.hostBytes(p, h)])];
}
