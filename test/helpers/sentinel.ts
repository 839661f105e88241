import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RedisAuth } from '../../src/config/schema.js';
import { portFree, redisServerArgs } from '../../src/lab/redis.js';
import { run, sleep, waitFor } from '../../src/util/exec.js';
import { alive } from '../../src/util/process.js';

/** One process this helper started: how to start it again, and its pid file. */
interface Proc {
  port: number;
  kind: 'redis' | 'sentinel';
  pidfile: string;
  start: () => Promise<void>;
}

export interface SentinelSetOptions {
  replicas?: number;
  sentinels?: number;
  quorum?: number;
  /** sentinel down-after-milliseconds: how long a silent primary takes to be judged down. */
  downAfterMs?: number;
  failoverTimeoutMs?: number;
}

/**
 * A Redis Sentinel deployment of real processes (Debian's redis-server and
 * redis-sentinel) on free loopback ports, for one test file: a primary,
 * replicas and sentinels, with a primary name of its own, all files in one
 * temporary directory. Processes are stopped only by the pids this helper
 * started (read from its own pid files, checked against their command line).
 */
export class TestSentinels {
  readonly procs: Proc[] = [];
  private constructor(
    readonly dir: string,
    readonly name: string,
    private readonly o: Required<SentinelSetOptions>,
  ) {}

  static async start(opts: SentinelSetOptions = {}): Promise<TestSentinels> {
    const o = { replicas: 1, sentinels: 3, quorum: 2, downAfterMs: 1000, failoverTimeoutMs: 3000, ...opts };
    const set = new TestSentinels(await mkdtemp(join(tmpdir(), 'vc-sentinel-')), `vc-test-${randomBytes(4).toString('hex')}`, o);
    try {
      const primary = await set.startRedis();
      for (let i = 0; i < o.replicas; i++) await set.startRedis(primary);
      for (let i = 0; i < o.sentinels; i++) await set.startSentinel(primary, set.name, o.quorum);
      await set.settled();
      return set;
    } catch (err) {
      await set.close();
      throw err;
    }
  }

  /** What the configuration's redis section gives (redis.sentinels, redis.primaryName). */
  get auth(): RedisAuth {
    return { sentinels: this.sentinelPorts.map((p) => `127.0.0.1:${p}`), primaryName: this.name };
  }

  get sentinelPorts(): number[] {
    return this.procs.filter((p) => p.kind === 'sentinel').map((p) => p.port);
  }

  get dataPorts(): number[] {
    return this.procs.filter((p) => p.kind === 'redis').map((p) => p.port);
  }

  private async freePort(): Promise<number> {
    for (let tries = 0; tries < 100; tries++) {
      const port = 20000 + Math.floor(Math.random() * 20000);
      if (!this.procs.some((p) => p.port === port) && (await portFree(port))) return port;
    }
    throw new Error('no free loopback port for a test Redis');
  }

  /** A data node (a replica of `primaryPort` when given); returns its port. */
  async startRedis(primaryPort?: number): Promise<number> {
    const port = await this.freePort();
    const pidfile = join(this.dir, `redis-${port}.pid`);
    const args = [
      ...redisServerArgs({ port, bind: '127.0.0.1', dir: this.dir, pidfile, logfile: join(this.dir, `redis-${port}.log`) }),
      '--dbfilename',
      `dump-${port}.rdb`,
      ...(primaryPort ? ['--replicaof', '127.0.0.1', String(primaryPort)] : []),
    ];
    const start = async () => {
      await run('redis-server', args);
      await waitFor(`test Redis on port ${port}`, async () => ((await this.cli(port, 'ping')) === 'PONG' ? true : undefined), 10_000, 50);
    };
    this.procs.push({ port, kind: 'redis', pidfile, start });
    await start();
    return port;
  }

  /** A sentinel monitoring `primaryPort` as `name` (another primary, under the same name: sentinels that disagree). */
  async startSentinel(primaryPort: number, name = this.name, quorum = this.o.quorum): Promise<number> {
    const port = await this.freePort();
    const pidfile = join(this.dir, `sentinel-${port}.pid`);
    const conf = join(this.dir, `sentinel-${port}.conf`);
    // Sentinel rewrites its file (the replicas and sentinels it found, the current primary): a restart keeps them.
    await writeFile(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        'daemonize yes',
        `pidfile ${pidfile}`,
        `logfile ${join(this.dir, `sentinel-${port}.log`)}`,
        `dir ${this.dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${primaryPort} ${quorum}`,
        `sentinel down-after-milliseconds ${name} ${this.o.downAfterMs}`,
        `sentinel failover-timeout ${name} ${this.o.failoverTimeoutMs}`,
        `sentinel parallel-syncs ${name} 1`,
        '',
      ].join('\n'),
    );
    const start = async () => {
      await run('redis-sentinel', [conf]);
      await waitFor(`test sentinel on port ${port}`, async () => ((await this.cli(port, 'ping')) === 'PONG' ? true : undefined), 10_000, 50);
    };
    this.procs.push({ port, kind: 'sentinel', pidfile, start });
    await start();
    return port;
  }

  /** Until every sentinel knows the others, the replicas, and the same primary (a fresh set needs a few seconds). */
  async settled(timeoutMs = 30_000): Promise<number> {
    const sentinels = this.sentinelPorts;
    return waitFor(
      `the sentinels of ${this.name} to find each other and the replicas`,
      async () => {
        const primaries = new Set<string>();
        for (const s of sentinels) {
          // --raw prints each record's fields one a line: count the records by their 'ip' field.
          const records = async (...args: string[]) => (await this.cli(s, ...args).catch(() => '')).split('\n').filter((l) => l === 'ip').length;
          const peers = await records('sentinel', 'sentinels', this.name);
          const replicas = await records('sentinel', 'replicas', this.name);
          const addr = (await this.cli(s, 'sentinel', 'get-master-addr-by-name', this.name).catch(() => '')).split('\n').join(':');
          if (peers < sentinels.length - 1 || replicas < this.o.replicas) return undefined;
          primaries.add(addr);
        }
        if (primaries.size !== 1) return undefined;
        const primary = Number([...primaries][0]!.split(':')[1]);
        // And the replicas in sync (not still loading the primary's snapshot).
        const online = ((await this.cli(primary, 'info', 'replication').catch(() => '')).match(/state=online/g) ?? []).length;
        return online >= this.o.replicas ? primary : undefined;
      },
      timeoutMs,
      200,
    );
  }

  /** The primary's port, as the first sentinel that answers names it. */
  async primaryPort(): Promise<number> {
    for (const s of this.sentinelPorts) {
      const out = await this.cli(s, 'sentinel', 'get-master-addr-by-name', this.name).catch(() => '');
      const port = Number(out.split('\n')[1]);
      if (port) return port;
    }
    throw new Error(`no sentinel of ${this.name} names a primary`);
  }

  /** Until every sentinel that runs names another primary than `old`; returns it. */
  async failedOver(old: number, timeoutMs = 30_000): Promise<number> {
    return waitFor(
      `a failover of ${this.name} away from port ${old}`,
      async () => {
        const ports = new Set<number>();
        for (const s of this.sentinelPorts) {
          if (!(await this.running(s))) continue;
          ports.add(Number((await this.cli(s, 'sentinel', 'get-master-addr-by-name', this.name).catch(() => '')).split('\n')[1]));
        }
        const [p] = [...ports];
        return ports.size === 1 && p && p !== old ? p : undefined;
      },
      timeoutMs,
      50,
    );
  }

  /** SIGKILL: the process dies at once, with whatever it had not sent its replicas. */
  async kill(port: number): Promise<void> {
    const pid = await this.pid(port);
    if (pid) process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100 && pid && alive(pid); i++) await sleep(20);
  }

  /** Starts again a process this helper started and stopped (a data node comes back as it was started; the sentinels make it a replica). */
  async restart(port: number): Promise<void> {
    const p = this.procs.find((x) => x.port === port) ?? assert(`no process of this set on port ${port}`);
    if (await this.running(port)) return;
    await p.start();
  }

  async pause(port: number): Promise<void> {
    const pid = await this.pid(port);
    if (pid) process.kill(pid, 'SIGSTOP');
  }

  async resume(port: number): Promise<void> {
    const pid = await this.pid(port);
    if (pid) process.kill(pid, 'SIGCONT');
  }

  async running(port: number): Promise<boolean> {
    return (await this.pid(port)) !== undefined;
  }

  /** The pid of our process on `port`, if it runs (its pid file, and a command line that names the port or the config file). */
  private async pid(port: number): Promise<number | undefined> {
    const p = this.procs.find((x) => x.port === port);
    if (!p) return undefined;
    const pid = Number((await readFile(p.pidfile, 'utf8').catch(() => '0')).trim());
    if (!(pid > 0) || !alive(pid)) return undefined;
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    return cmd.includes(String(port)) ? pid : undefined;
  }

  /** redis-cli against one of the set's ports: its raw output (throws on failure). */
  cli(port: number, ...args: string[]): Promise<string> {
    return run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), '--raw', ...args], { timeoutMs: 3000 }).then((s) => s.trim());
  }

  /** Stops every process this helper started (SIGCONT first, for paused ones) and removes its files. */
  async close(): Promise<void> {
    for (const p of this.procs) {
      const pid = await this.pid(p.port);
      if (!pid) continue;
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 100 && alive(pid); i++) await sleep(20);
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

function assert(message: string): never {
  throw new Error(message);
}
