import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RedisAuth } from '../../src/config/schema.js';
import { portFree, redisServerArgs } from '../../src/lab/redis.js';
import { run, sleep, succeeds, waitFor } from '../../src/util/exec.js';
import { alive } from '../../src/util/process.js';

/**
 * A Redis Cluster of real processes (Debian's redis-server, made a cluster by
 * `redis-cli --cluster create`) on free loopback ports, for one test file:
 * `primaries` primaries with `replicas` replicas each, every node in its own
 * directory under one temporary one. Nodes are stopped only by the pids this
 * helper started (their pid files).
 */
export class TestCluster {
  /** port → pid of the node this helper started there. */
  private readonly pids = new Map<number, number>();
  private constructor(
    readonly dir: string,
    readonly ports: number[],
    private readonly nodeTimeoutMs: number,
  ) {}

  /** The seed nodes, as redis.cluster takes them. */
  get auth(): RedisAuth {
    return { cluster: this.ports.map((p) => `127.0.0.1:${p}`) };
  }

  static async start(o: { primaries?: number; replicas?: number; nodeTimeoutMs?: number } = {}): Promise<TestCluster> {
    const n = (o.primaries ?? 3) * (1 + (o.replicas ?? 1));
    const ports: number[] = [];
    // Cluster nodes also listen on port + 10000 (the bus): both must be free.
    while (ports.length < n) {
      const p = 20000 + Math.floor(Math.random() * 20000);
      if (!ports.includes(p) && (await portFree(p)) && (await portFree(p + 10000))) ports.push(p);
    }
    const c = new TestCluster(await mkdtemp(join(tmpdir(), 'vc-cluster-')), ports, o.nodeTimeoutMs ?? 2000);
    try {
      for (const p of ports) await c.launch(p);
      await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(o.replicas ?? 1), '--cluster-yes'], { timeoutMs: 30_000 });
      await c.waitOk();
      return c;
    } catch (err) {
      await c.close();
      throw err;
    }
  }

  private nodeDir(port: number): string {
    return join(this.dir, String(port));
  }

  /** (Re)starts one node on its port, with its nodes.conf: it rejoins the cluster it was in. */
  async launch(port: number): Promise<void> {
    await mkdir(this.nodeDir(port), { recursive: true });
    await run('redis-server', [
      ...redisServerArgs({ port, bind: '127.0.0.1', dir: this.nodeDir(port) }),
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      join(this.nodeDir(port), 'nodes.conf'),
      '--cluster-node-timeout',
      String(this.nodeTimeoutMs),
    ]);
    await waitFor(`cluster node on port ${port}`, async () => ((await this.cli(port, 'ping')) ? true : undefined), 10_000, 50);
    this.pids.set(port, await this.pid(port));
  }

  cli(port: number, ...args: string[]): Promise<boolean> {
    return succeeds('redis-cli', ['-p', String(port), ...args], { timeoutMs: 3000 });
  }

  /** One node's answer to a command, as text ('' when it does not answer). */
  async ask(port: number, ...args: string[]): Promise<string> {
    return run('redis-cli', ['-p', String(port), ...args], { timeoutMs: 3000 }).catch(() => '');
  }

  /** The ports of the nodes that are primaries now, as each running node sees itself. */
  async primaries(): Promise<number[]> {
    const out: number[] = [];
    for (const p of this.ports) if (/^role:master/m.test(await this.ask(p, 'info', 'replication'))) out.push(p);
    return out;
  }

  /** Waits until every running node says cluster_state:ok. */
  async waitOk(timeoutMs = 30_000): Promise<void> {
    await waitFor(
      'the cluster to be ok on every node',
      async () => {
        for (const p of this.ports) {
          if (!alive(await this.pid(p))) continue;
          if (!/cluster_state:ok/.test(await this.ask(p, 'cluster', 'info'))) return undefined;
        }
        return true;
      },
      timeoutMs,
      100,
    );
  }

  private async pid(port: number): Promise<number> {
    return Number((await readFile(join(this.nodeDir(port), 'redis.pid'), 'utf8').catch(() => '0')).trim());
  }

  /** The id of the primary the node on `port` replicates, from its own nodes.conf view ('' for a primary). */
  replicaOf(port: number): string {
    return this.masters.get(port) ?? '';
  }
  private readonly masters = new Map<number, string>();

  /** Reads each running node's role: which primary (by id) each replica follows. */
  async roles(): Promise<void> {
    for (const p of this.ports) {
      const line = (await this.ask(p, 'cluster', 'nodes')).split('\n').find((l) => l.includes('myself'));
      const f = line?.split(' ') ?? [];
      if (/slave/.test(f[2] ?? '')) this.masters.set(p, f[3]!);
      else this.masters.delete(p);
    }
  }

  /** Whether the node on `port` runs (its pid file names a live process). */
  running(port: number): boolean {
    return this.pids.has(port) && alive(this.pids.get(port)!);
  }

  /** Kills one node (SIGKILL, by its pid): a primary dies mid-write. */
  async kill(port: number): Promise<void> {
    const pid = await this.pid(port);
    if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100 && pid > 0 && alive(pid); i++) await sleep(20);
  }

  async close(): Promise<void> {
    for (const p of this.ports) await this.kill(p);
    await rm(this.dir, { recursive: true, force: true });
  }
}
