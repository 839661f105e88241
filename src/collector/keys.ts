/**
 * The Redis schema, in one place (docs/agent.md, "Redis schema", shows each key with
 * redis-cli). A period is named by its start in Unix seconds; a pair member is
 * `SRC>DST`, each side a VM name (a `>` or `%` in it escaped, see pairMember),
 * or a peer address when the peer is not a known VM (a file server, an
 * external user), or `ether:0xNNNN` for frames that are not IP. Pairs are directed: `a>b` is what a sent to b. In the packed
 * reports a member is a number in the cluster's pair dictionary (vc:{vc}:pair:*).
 *
 * Hash tags, for Redis Cluster (a key's slot is the hash of the part between its first `{` and `}`): every key
 * of one period carries the period (`vc:period:{P}:…`), every other key `{vc}` (`vc:{vc}:…`). So each Lua
 * script and each MULTI touches one slot: a report's guard, blob, meta and zsets are one period's; the
 * directory, the pair dictionary, the manager's lock and the events are all `{vc}`. The bulk of the data, the
 * periods, spreads over the shards period by period; what spans periods (the list of periods, the pair
 * dictionary's span) is written by a second, idempotent step after the report's script (Store.apply). On one
 * Redis the tags change nothing but the names.
 */
const G = 'vc:{vc}';
const period = (p: number) => `vc:period:{${p}}`;

export const K = {
  /** SET of host names that ever registered. */
  hosts: `${G}:hosts`,
  /** HASH: site, uri, cpus, memoryKiB, freeMemoryKiB, vms, sensor, periodSeconds, firstSeen, lastSeen (ms). */
  host: (h: string) => `${G}:host:${h}`,
  /** SET of VM names in the directory. */
  vms: `${G}:vms`,
  /** HASH: uuid, host, site, state (running|arriving|stopped), mac, addresses, memoryKiB, vcpus, since (ms). */
  vm: (name: string) => `${G}:vm:${name}`,
  /** HASH: address → VM name, learned from libvirt XML and from the ARP a VM sends. */
  addr: `${G}:addr`,
  /** ZSET of periods with at least one report: member and score are the period start. */
  periods: `${G}:periods`,
  /** SET of hosts whose report for the period has been applied (the exactly-once guard; written with the host's blob and meta in one script). */
  reported: (p: number) => `${period(p)}:reported`,
  /**
   * STRING: one host's report for the period, packed (src/collector/packed.ts: the pairs as dictionary ids,
   * f64 messages, f64 bytes, 20 bytes a pair). What queries read, and what estimates a late host from the period before.
   */
  hostPairs: (p: number, h: string) => `${period(p)}:host:${h}:pairs`,
  /**
   * ZSET pair → messages (or bytes) one host measured in the period: for people (redis-cli) and tools, not read by
   * the queries (all hosts summed: ZUNION over the hosts of `reported`). Per host, not one zset for the period: a
   * report's pairs go into zsets of their own size, with no sum (the report is applied once), and each agent
   * writes only its own (virt-cohort acl). At 50,000 VMs (test/bench/fleet.ts) Redis' CPU during a period's
   * ingest went from 11.5 s (one zset pair of 1M members) to 5.1 s. A small report is
   * written with its guard; a large one (more than Store's `inlinePairs`) a moment later by `Store.materialise`,
   * in chunks, each once (see `pending`).
   */
  hostMsgs: (p: number, h: string) => `${period(p)}:host:${h}:msgs`,
  hostBytes: (p: number, h: string) => `${period(p)}:host:${h}:bytes`,
  /** The all-hosts zsets a period had before the per-host ones (until 2026-12): deleted with the period's zsets. */
  oldZsets: (p: number) => [`${period(p)}:msgs`, `${period(p)}:bytes`],
  /** HASH host → how many pairs of that host's applied report (in Store's `zsetColumns` order) are already in its zsets; the field goes when all are. */
  pending: (p: number) => `${period(p)}:pending`,
  /** STRING, present once a Store.trim deleted the period's zsets (it fell out of the newest `zsetPeriods`): no script makes them again. */
  zsetsGone: (p: number) => `${period(p)}:zsets-gone`,
  /**
   * HASH pair member → id in the cluster-wide pair dictionary: the index a Store looks members up in. Written by
   * Store.materialise, off the report's path; a member given an id by two Stores before either indexed it keeps
   * both (harmless: everything downstream goes by name). At most `Store.dictionaryCap` ids (see pairDict).
   */
  pairIds: `${G}:pair:ids`,
  /**
   * HASH segment → names: field S holds the members of ids S×4096 … S×4096+4095 (NAME_SEGMENT), in id order,
   * joined by NUL (no VM name or address holds one). Appended by the script that reserves the ids, so an id is
   * named before any report can use it. At most `Store.dictionaryCap` ids (see pairDict).
   */
  pairNames: `${G}:pair:names`,
  /**
   * HASH epoch (16 hex digits, new when the dictionary is created; packed reports carry it), next (the next id),
   * and `retired:EPOCH` → Unix seconds for each earlier dictionary still kept: when one holds `cap` ids, the next
   * new member starts a new dictionary, and the old one's names move to `retiredNames(EPOCH)` until no period
   * kept uses them (Store.trim). So the dictionary is bounded by retention, not by every pair ever seen.
   */
  pairDict: `${G}:pair:dict`,
  /** HASH: the name segments of a retired dictionary, as vc:pair:names was. */
  retiredNames: (epoch: string) => `${G}:pair:names:${epoch}`,
  /** HASH host → JSON of the report's summary (at, from, flows, overflow, unknownTap, vms). */
  meta: (p: number) => `${period(p)}:meta`,
  /** STREAM of one host's hook and lifecycle events (per host, so that a Redis ACL can let each agent write only its own). */
  events: (h: string) => `${G}:events:${h}`,
  /** HASH of cluster-wide settings: periodSeconds, retention. */
  settings: `${G}:settings`,
  /**
   * STRING: the version of the environment in force (absent: none stored; commands and the manager then derive one
   * from the registry). Raised only by the compare-and-set script ENV_PUT, with the version's record in `envVersions`.
   */
  envVersion: `${G}:env:version`,
  /** HASH version → JSON {version, at (ms), source, by, file}: every version of the environment ever applied, kept (`virt-cohort env history`). */
  envVersions: `${G}:env:versions`,
  /** STRING: the active manager's id, with an expiry (the leader lock). */
  managerLock: `${G}:manager:lock`,
  /** STRING: the leadership term, raised each time a manager takes the lock: the fencing token of its migrations. */
  managerTerm: `${G}:manager:term`,
  /** STRING: JSON {term, moves: {"vm→host": rounds in a row proposed}}, the hysteresis streak of the leader of that term. */
  managerStreak: `${G}:manager:streak`,
  /** HASH host → the id of the newest entry of vc:events:HOST the manager has handled: a new leader goes on from there. */
  managerEvents: `${G}:manager:events`,
  /** HASH per VM: count and until (ms) of its migration cooldown. */
  cooldown: (vm: string) => `${G}:cooldown:${vm}`,
  /** HASH vm → JSON of the migration running now (from, to, at, manager, term): written before virsh starts, removed with its record. */
  migrating: `${G}:migrating`,
  /** STREAM of every migration: vm, from, to, outcome, seconds, downtimeMs, dataMiB, reason, error. */
  migrations: `${G}:migrations`,
} as const;

export const EVENTS_MAXLEN = 100_000;

/**
 * One side of a pair member: libvirt lets a VM name hold `>` (and `%`), so
 * those two are written %3E and %25; every other character stays as it is.
 * Names without either (all the usual ones) read the same as before.
 */
const escapeSide = (name: string): string => (name.includes('%') || name.includes('>') ? name.replace(/[%>]/g, (c) => (c === '%' ? '%25' : '%3E')) : name);
const unescapeSide = (side: string): string => (side.includes('%') ? side.replace(/%(25|3E)/gi, (_, h: string) => (h === '25' ? '%' : '>')) : side);

export function pairMember(src: string, dst: string): string {
  return `${escapeSide(src)}>${escapeSide(dst)}`;
}

/** The two names of a member; the one unescaped `>` separates them. */
export function splitPair(member: string): [string, string] {
  const i = member.indexOf('>');
  return i < 0 ? [unescapeSide(member), ''] : [unescapeSide(member.slice(0, i)), unescapeSide(member.slice(i + 1))];
}

/** Every key of one period, for retention. */
export function periodKeys(p: number, hosts: string[]): string[] {
  return [K.reported(p), K.meta(p), K.pending(p), K.zsetsGone(p), ...K.oldZsets(p), ...hosts.flatMap((h) => [K.hostPairs(p, h), K.hostMsgs(p, h), K.hostBytes(p, h)])];
}
