/**
 * The fleet bench's simulated agents (test/bench/fleet.ts): one per simulated host, each with its
 * own connection, Store (its own member → id cache) and spool, publishing through the agent's own
 * path (publishSpool: the spool, Store.apply and its exactly-once guard, trim, materialise), and
 * registering its host and VMs as an agent does (Registry.registerHost, HostDirectory.publish). Only
 * the sensor and libvirt are stood in: the reports come from the generator (fleet-gen.ts).
 *
 * The Redis the fleet writes into is one parameter, a RedisTarget: one redis-server, or a 3-shard
 * Redis Cluster (clusterTarget).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { AddressBook } from '../../src/agent/addresses.js';
import { durable, publishSpool } from '../../src/agent/agent.js';
import { HostDirectory } from '../../src/agent/directory.js';
import { Spool } from '../../src/agent/spool.js';
import { Registry } from '../../src/collector/registry.js';
import type { Report } from '../../src/collector/report.js';
import { Store } from '../../src/collector/store.js';
import type { DomainSnapshot } from '../../src/libvirt/client.js';
import { sleep } from '../../src/util/exec.js';
import { TestCluster } from '../helpers/cluster.js';
import { TestRedis } from '../helpers/redis.js';
import { connectDaemon } from '../../src/config/redis.js';
import { DEFAULT_REDIS_URL } from '../../src/config/schema.js';
import { type Fleet, type SimHost, VM_KIB } from './fleet-gen.js';
import type { RedisSpec } from './fleet-round.js';

/** Where the fleet writes: a client per agent, the manager's client, and what Redis uses. */
export interface RedisTarget {
  name: string;
  /** A new connection (an agent's, or the manager's). */
  connect(): Redis;
  /** How the manager's thread (fleet-round.ts) connects, as the manager daemon does. */
  spec: RedisSpec;
  /** used_memory summed over the primaries, once lazy frees are done (bytes). */
  memory(): Promise<number>;
  /** CPU seconds Redis used so far, summed over the primaries. */
  cpuSeconds(): Promise<number>;
  close(): Promise<void>;
}

/** The figures of one server's INFO. */
async function info(r: Redis): Promise<{ used: number; lazy: number; cpu: number }> {
  const text = await r.info();
  const num = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(text)?.[1] ?? 0);
  return { used: num('used_memory'), lazy: num('lazyfree_pending_objects'), cpu: num('used_cpu_user') + num('used_cpu_sys') };
}

/** One private redis-server (test/helpers/redis.ts), stopped by close() whatever happened. */
export async function singleRedis(): Promise<RedisTarget> {
  const server = await TestRedis.start();
  const admin = new Redis(server.url);
  return {
    name: 'one Redis',
    connect: () => new Redis(server.url, { maxRetriesPerRequest: null }),
    spec: { url: server.url },
    async memory() {
      for (let i = 0; i < 600; i++) {
        const x = await info(admin);
        if (x.lazy === 0) return x.used;
        await sleep(100);
      }
      throw new Error('Redis still frees objects after a minute');
    },
    cpuSeconds: async () => (await info(admin)).cpu,
    async close() {
      // Emptied first: TestRedis stops the server with SHUTDOWN SAVE, and gigabytes would outlast its wait.
      await admin.flushall('SYNC').catch(() => undefined);
      admin.disconnect();
      await server.close();
    },
  };
}

/**
 * A real Redis Cluster of 3 primaries and 3 replicas on local ports (test/helpers/cluster.ts), reached as
 * the daemons reach one (redis.cluster: connectDaemon gives an ioredis Cluster client); memory and CPU summed
 * over the primaries (the replicas hold the same data again, and use CPU of this machine too).
 */
export async function clusterTarget(): Promise<RedisTarget> {
  // Redis' default cluster-node-timeout (15 s). With the failover tests' 2 s, a run at 50,000 VMs found 561
  // hosts' reports of its first period missing after their agents had sent them: most likely a primary this
  // loaded machine kept busy past 2 s was failed over to a replica that did not have them (not confirmed).
  const cluster = await TestCluster.start({ nodeTimeoutMs: 15_000 });
  const primaries = (await cluster.primaries()).map((port) => new Redis({ port, host: '127.0.0.1' }));
  const sum = async (f: (x: { used: number; lazy: number; cpu: number }) => number) => (await Promise.all(primaries.map(info))).reduce((t, x) => t + f(x), 0);
  return {
    name: 'the 3-shard Cluster',
    connect: () => connectDaemon(DEFAULT_REDIS_URL, cluster.auth),
    spec: { url: DEFAULT_REDIS_URL, auth: cluster.auth },
    async memory() {
      for (let i = 0; i < 600; i++) {
        if ((await sum((x) => x.lazy)) === 0) return sum((x) => x.used);
        await sleep(100);
      }
      throw new Error('the cluster still frees objects after a minute');
    },
    cpuSeconds: () => sum((x) => x.cpu),
    async close() {
      for (const p of primaries) p.disconnect();
      await cluster.close();
    },
  };
}

/** libvirt's view of a simulated VM, as HostDirectory.publish takes it. */
function domain(f: Fleet, v: number): DomainSnapshot {
  const name = f.vmNames[v]!;
  const mac = `52:54:00:${((v >> 16) & 255).toString(16).padStart(2, '0')}:${((v >> 8) & 255).toString(16).padStart(2, '0')}:${(v & 255).toString(16).padStart(2, '0')}`;
  return {
    name,
    uuid: `00000000-0000-4000-8000-${String(v).padStart(12, '0')}`,
    state: 'running',
    memoryKiB: VM_KIB,
    vcpus: 2,
    interfaces: [{ mac, tap: `vnet${v}`, addresses: [f.vmAddr[v]!] }] as DomainSnapshot['interfaces'],
    pinned: false,
    optOut: false,
  };
}

export class SimAgent {
  /** When this agent's report of the period was applied (performance.now(), ms): from then on queries count it. */
  appliedAt = 0;

  private constructor(
    readonly host: SimHost,
    readonly redis: Redis,
    readonly store: Store,
    readonly spool: Spool,
    private readonly directory: HostDirectory,
    private readonly book: AddressBook,
  ) {}

  /** `zsetPeriods`: the agents' agent.zsetPeriods (undefined: the default). */
  static async start(target: RedisTarget, host: SimHost, spoolRoot: string, zsetPeriods?: number): Promise<SimAgent> {
    const redis = target.connect();
    const registry = new Registry(redis);
    const book = new AddressBook();
    const spool = await Spool.open(join(spoolRoot, host.name), 2880);
    return new SimAgent(
      host,
      redis,
      new Store(redis, zsetPeriods === undefined ? { host: host.name } : { zsetPeriods, host: host.name }),
      spool,
      new HostDirectory(registry, book, host.name, host.site),
      book,
    );
  }

  /** The heartbeat and the directory, as the agent's reconcile writes them (`now`: the simulated clock, ms). */
  async register(f: Fleet, now: number, withVms: boolean): Promise<void> {
    const domains = this.host.vms.map((v) => domain(f, v));
    await this.directory.registry.registerHost(
      this.host.name,
      {
        site: this.host.site,
        uri: `qemu+tls://${this.host.name}/system`,
        cpus: this.host.cpus,
        memoryKiB: this.host.memoryKiB,
        freeMemoryKiB: this.host.memoryKiB - domains.length * VM_KIB,
        vms: domains.length,
        sensor: 'ebpf',
        periodSeconds: 30,
      },
      now,
    );
    if (!withVms) return;
    for (const d of domains)
      this.book.trust(
        d.name,
        d.interfaces.flatMap((i) => i.addresses),
      );
    await this.directory.publish(domains, [], now);
  }

  /** Flushes whose replica wait timed out (the report stayed spooled and went again, as the agent does). */
  retries = 0;

  /**
   * The period's report: into the spool, then sent as the agent's flush sends it, again at once while a
   * flush fails (the agent's next flush comes a period later; here the bench waits for it).
   */
  async publish(r: Report): Promise<void> {
    await this.spool.put(r);
    for (let attempt = 0; ; attempt++) {
      try {
        await publishSpool(this.spool, this.store, {
          host: this.host.name,
          retention: 0,
          send: async (x) => {
            await this.store.apply(x);
            this.appliedAt = performance.now();
          },
          durable: (periods) => durable(this.redis, periods),
        });
      } catch (err) {
        if (attempt >= 10) throw err;
        this.retries++;
      }
      if ((await this.spool.size()) === 0) return;
    }
  }

  close(): void {
    this.redis.disconnect();
  }
}

/** Agents for every host of the fleet, their spools under a fresh directory in memory (each agent has its own disk). */
export async function startAgents(target: RedisTarget, f: Fleet, zsetPeriods?: number): Promise<{ agents: SimAgent[]; stop: () => Promise<void> }> {
  const root = await mkdtemp(join('/dev/shm', 'vc-fleet-'));
  const agents: SimAgent[] = [];
  const stop = async () => {
    for (const a of agents) a.close();
    await rm(root, { recursive: true, force: true });
  };
  try {
    for (const h of f.hosts) agents.push(await SimAgent.start(target, h, root, zsetPeriods));
  } catch (err) {
    await stop();
    throw err;
  }
  return { agents, stop };
}
