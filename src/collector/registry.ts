import type { Redis } from 'ioredis';
import { K } from './keys.js';
import { results } from './results.js';
import { defineScripts } from './scripts.js';

/**
 * The host registry, the VM directory, the address book and the cluster-wide
 * settings, and the versions of the environment: every read and write of them
 * goes through here (Store keeps the period data). Agents write their host and VMs; the manager, the planner and
 * the commands read them back; `virt-cohort host drain` marks a host.
 */

/** What an agent publishes of its host (vc:{vc}:host:H). */
export interface HostRecord {
  site: string;
  uri: string;
  cpus: number;
  memoryKiB: number;
  freeMemoryKiB: number;
  vms: number;
  sensor: string;
  /** Why the agent counts with libpcap although eBPF was allowed ('' when it did not fall back). */
  sensorNote?: string;
  periodSeconds: number;
  /** Where migrations into the host send memory ('' = the libvirt URI's host). */
  migrateUri?: string;
}

/** What an agent publishes of one of its VMs (vc:{vc}:vm:NAME). */
export interface VmRecord {
  uuid: string;
  host: string;
  site: string;
  state: 'running' | 'arriving' | 'stopped';
  mac: string;
  addresses: string[];
  memoryKiB: number;
  vcpus: number;
  /** The domain's metadata says never migrate it / do not count it. */
  pinned?: boolean;
  optOut?: boolean;
  /** The rules of its domain metadata, as JSON ('' or absent: none); src/placement/rules.ts reads them. */
  rules?: string;
}

/** A host as the registry holds it (vc:{vc}:host:H), read back: what its agent wrote, and what the registry adds. */
export interface HostEntry extends HostRecord {
  host: string;
  /** Unix ms; 0 when the hash lacks it. */
  firstSeen: number;
  lastSeen: number;
  /** Set by `virt-cohort host drain`: the manager empties it and plans nothing onto it. */
  draining: boolean;
}

/** A VM as the directory holds it (vc:{vc}:vm:NAME), read back. */
export interface VmEntry {
  name: string;
  uuid: string;
  host: string;
  site: string;
  state: string;
  mac: string;
  addresses: string[];
  memoryKiB: number;
  vcpus: number;
  since: number;
  /** Domain metadata: never migrate (pinned), not counted (optOut, also never migrated). */
  pinned: boolean;
  optOut: boolean;
  /** The rules of its domain metadata, as JSON; '' when none. */
  rules: string;
}

/** Cluster-wide settings (vc:{vc}:settings); absent fields are undefined. */
export interface Settings {
  periodSeconds?: number;
  retention?: number;
}

/**
 * One version of the environment as stored (vc:{vc}:env:versions): the document in the file format
 * (src/placement/env.ts validates it before it is written), when, from what, by whom.
 */
export interface EnvRecord {
  version: number;
  /** Unix ms. */
  at: number;
  /** What wrote it: `env apply FILE`, `env set EXPR`. */
  source: string;
  /** Who: user@host of the command. */
  by: string;
  file: object;
}

/** A host's sensor backend for a person: `pcap (fallback)` when libpcap was not asked for. */
export const sensorLabel = (h: Pick<HostEntry, 'sensor' | 'sensorNote'>) => (h.sensor || '?') + (h.sensorNote ? ' (fallback)' : '');

const num = (v: string | undefined) => (v === undefined || v === '' ? 0 : Number(v));

function hostEntry(host: string, r: Record<string, string>): HostEntry {
  return {
    host,
    site: r.site ?? '',
    uri: r.uri ?? '',
    cpus: num(r.cpus),
    memoryKiB: num(r.memoryKiB),
    freeMemoryKiB: num(r.freeMemoryKiB),
    vms: num(r.vms),
    sensor: r.sensor ?? '',
    sensorNote: r.sensorNote ?? '',
    periodSeconds: num(r.periodSeconds),
    migrateUri: r.migrateUri ?? '',
    firstSeen: num(r.firstSeen),
    lastSeen: num(r.lastSeen),
    draining: r.draining === '1',
  };
}

function vmEntry(name: string, r: Record<string, string>): VmEntry {
  return {
    name,
    uuid: r.uuid ?? '',
    host: r.host ?? '',
    site: r.site ?? '',
    state: r.state ?? '',
    mac: r.mac ?? '',
    addresses: r.addresses ? r.addresses.split(',') : [],
    memoryKiB: num(r.memoryKiB),
    vcpus: num(r.vcpus),
    since: num(r.since),
    pinned: r.pinned === '1',
    optOut: r.optOut === '1',
    rules: r.rules ?? '',
  };
}

export class Registry {
  constructor(readonly redis: Redis) {
    defineScripts(redis);
  }

  // ---- hosts -------------------------------------------------------------

  /** An agent's heartbeat: its host's record, lastSeen `now`; the cluster's period length when none is set yet. */
  async registerHost(host: string, rec: HostRecord, now = Date.now()): Promise<void> {
    await results(
      this.redis
        .multi()
        .sadd(K.hosts, host)
        .hsetnx(K.host(host), 'firstSeen', String(now))
        .hset(K.host(host), { ...rec, migrateUri: rec.migrateUri ?? '', sensorNote: rec.sensorNote ?? '', lastSeen: now })
        .hsetnx(K.settings, 'periodSeconds', String(rec.periodSeconds)),
      `the registration of host ${host}`,
    );
  }

  /** Every host that ever registered, sorted by name. */
  async hosts(): Promise<HostEntry[]> {
    return (await this.readAll(K.hosts, K.host)).map(([host, r]) => hostEntry(host, r));
  }

  /** One host, or undefined when it never registered. */
  async host(name: string): Promise<HostEntry | undefined> {
    const r = await this.redis.hgetall(K.host(name));
    return Object.keys(r).length ? hostEntry(name, r) : undefined;
  }

  /** The names of every host that ever registered (unsorted). */
  hostNames(): Promise<string[]> {
    return this.redis.smembers(K.hosts);
  }

  /** Marks a host draining (the manager empties it) or not; false when no such host registered. */
  async setDraining(host: string, draining: boolean): Promise<boolean> {
    if (!(await this.redis.sismember(K.hosts, host))) return false;
    await this.redis.hset(K.host(host), 'draining', draining ? '1' : '0');
    return true;
  }

  // ---- VMs ---------------------------------------------------------------

  /** Writes a VM's record; `since` moves only when its host or state changes. Its addresses go into the address book. */
  async putVm(name: string, rec: VmRecord, now = Date.now()): Promise<void> {
    // A script, not WATCH/MULTI: WATCH holds per connection, and the agent's other writes share this one.
    const fields = Object.entries({ ...rec, addresses: rec.addresses.join(','), pinned: rec.pinned ? 1 : 0, optOut: rec.optOut ? 1 : 0, rules: rec.rules ?? '' }).flat();
    await this.redis.vcPutVm(K.vms, K.vm(name), K.addr, name, rec.host, rec.state, now, fields.length, ...fields, ...rec.addresses);
  }

  /** Marks the VM stopped if the directory still has it on `host` (not when it has moved on); true when it did. */
  async vmGone(name: string, host: string, now = Date.now()): Promise<boolean> {
    return (await this.redis.vcVmGone(K.vm(name), host, now)) === 1;
  }

  /** Every VM of the directory, sorted by name. */
  async vms(): Promise<VmEntry[]> {
    return (await this.readAll(K.vms, K.vm)).map(([name, r]) => vmEntry(name, r));
  }

  /** The host the directory has the VM on, or null when it has none. */
  vmHost(name: string): Promise<string | null> {
    return this.redis.hget(K.vm(name), 'host');
  }

  async hasVm(name: string): Promise<boolean> {
    return (await this.redis.sismember(K.vms, name)) === 1;
  }

  /** Address → VM name, for the whole cluster. */
  async addresses(): Promise<Map<string, string>> {
    return new Map(Object.entries(await this.redis.hgetall(K.addr)));
  }

  /**
   * The addresses the directory knows for each VM named: those its entry lists
   * (as its host last wrote them, or the host it left) that the address map
   * still gives it, not one another VM took since. Two round trips.
   */
  async heldAddresses(names: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (!names.length) return out;
    const tx = this.redis.pipeline();
    for (const n of names) tx.hget(K.vm(n), 'addresses');
    const listed = (await results(tx, 'the addresses of the VMs')).map((v) => (v ? (v as string).split(',') : []));
    const all = [...new Set(listed.flat())];
    const holders = all.length ? await this.redis.hmget(K.addr, ...all) : [];
    const holder = new Map(all.map((a, i) => [a, holders[i]]));
    names.forEach((n, i) => {
      const held = listed[i]!.filter((a) => holder.get(a) === n);
      if (held.length) out.set(n, held);
    });
    return out;
  }

  /** Removes `addrs` from the cluster's address map where they still point at `vm` (another VM may hold them now). */
  async dropAddresses(vm: string, addrs: string[]): Promise<void> {
    if (addrs.length) await this.redis.vcDropAddresses(K.addr, vm, ...addrs);
  }

  /**
   * Bounds the directory: forgets the VMs stopped before `cutoff` (ms) (their
   * records and the addresses pointing at them), and drops addresses whose VM
   * the directory no longer has. Returns how many VMs and addresses went.
   */
  async forget(cutoff: number): Promise<{ vms: number; addresses: number }> {
    const stopped = (await this.vms()).filter((v) => v.state === 'stopped' && v.since < cutoff).map((v) => v.name);
    let vms = 0;
    for (const name of stopped) vms += await this.redis.vcForgetVm(K.vms, K.vm(name), K.addr, name, cutoff);
    const byVm = new Map<string, string[]>();
    for (const [a, vm] of await this.addresses()) byVm.set(vm, [...(byVm.get(vm) ?? []), a]);
    const names = [...byVm.keys()];
    const known = names.length ? await this.redis.smismember(K.vms, ...names) : [];
    let addresses = 0;
    for (const [i, vm] of names.entries()) {
      if (known[i]) continue;
      await this.dropAddresses(vm, byVm.get(vm)!);
      addresses += byVm.get(vm)!.length;
    }
    return { vms, addresses };
  }

  /** The directory's state of each VM named (running, arriving, stopped; '' when unknown), in one round trip. */
  async vmStates(names: string[]): Promise<Map<string, string>> {
    if (!names.length) return new Map();
    const tx = this.redis.pipeline();
    for (const n of names) tx.hget(K.vm(n), 'state');
    const out = await results(tx, 'the VM states');
    return new Map(names.map((n, i) => [n, (out[i] as string | null) ?? '']));
  }

  // ---- settings ----------------------------------------------------------

  async settings(): Promise<Settings> {
    const [p, r] = await this.redis.hmget(K.settings, 'periodSeconds', 'retention');
    return { ...(p ? { periodSeconds: Number(p) } : {}), ...(r ? { retention: Number(r) } : {}) };
  }

  // ---- environment -------------------------------------------------------

  /** The version of the environment in force; 0 when none is stored. */
  async environmentVersion(): Promise<number> {
    return Number((await this.redis.get(K.envVersion)) ?? 0);
  }

  /** A version of the environment (default: the one in force); undefined when none is stored. */
  async environment(version?: number): Promise<EnvRecord | undefined> {
    const v = version ?? (await this.environmentVersion());
    if (!v) return undefined;
    const json = await this.redis.hget(K.envVersions, String(v));
    return json ? (JSON.parse(json) as EnvRecord) : undefined;
  }

  /** Every version stored, oldest first. */
  async environmentHistory(): Promise<EnvRecord[]> {
    const all = await this.redis.hgetall(K.envVersions);
    return Object.values(all)
      .map((j) => JSON.parse(j) as EnvRecord)
      .sort((a, b) => a.version - b.version);
  }

  /**
   * Stores the next version if the one in force is still `expected` (0: none yet), atomically: of
   * two writers that read the same version one wins, the other is told the version now in force
   * and reads again (see placement/fromCollector.ts changeEnvironment).
   */
  async putEnvironment(expected: number, rec: Omit<EnvRecord, 'version'>): Promise<{ written: boolean; version: number }> {
    const record: EnvRecord = { version: expected + 1, ...rec };
    const [written, version] = await this.redis.vcEnvPut(K.envVersion, K.envVersions, expected, JSON.stringify(record));
    return { written: written === 1, version: Number(version) };
  }

  /** Every member of the set `index` with its hash (`key(member)`), in one round trip, sorted by name. */
  private async readAll(index: string, key: (name: string) => string): Promise<[string, Record<string, string>][]> {
    const names = (await this.redis.smembers(index)).sort();
    if (!names.length) return [];
    const tx = this.redis.pipeline();
    for (const n of names) tx.hgetall(key(n));
    const out = await results(tx, `the hashes of ${index}`);
    return names.map((n, i) => [n, out[i] as Record<string, string>]);
  }
}
