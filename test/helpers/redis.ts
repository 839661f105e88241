import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { portFree, redisServerArgs } from '../../src/lab/redis.js';
import { run, sleep, succeeds, waitFor } from '../../src/util/exec.js';
import { alive } from '../../src/util/process.js';

/** A private Redis on a free loopback port, for one test file; stopped by its pid. */
export class TestRedis {
  private constructor(
    readonly port: number,
    readonly dir: string,
    readonly netns?: string,
    readonly password?: string,
    readonly aclfile?: string,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /**
   * `netns`: run it inside that network namespace (its loopback must be up), for an agent that runs there.
   * `password`: the server requires it (--requirepass); `url` stays without it.
   * `aclfile`: its users (it must keep `default` open for the helper's own redis-cli calls).
   */
  static async start(netns?: string, password?: string, aclfile?: string): Promise<TestRedis> {
    for (let tries = 0; tries < 50; tries++) {
      const port = 20000 + Math.floor(Math.random() * 20000);
      if (!(await portFree(port))) continue;
      const r = new TestRedis(port, await mkdtemp(join(tmpdir(), 'vc-redis-')), netns, password, aclfile);
      await r.launch();
      return r;
    }
    throw new Error('no free port for a test Redis');
  }

  /** (Re)starts the server on the same port: a Redis outage ends. */
  async launch(): Promise<void> {
    await run(
      'redis-server',
      [...redisServerArgs({ port: this.port, bind: '127.0.0.1', dir: this.dir }), ...(this.password ? ['--requirepass', this.password] : []), ...(this.aclfile ? ['--aclfile', this.aclfile] : [])],
      this.netns ? { netns: this.netns } : {},
    );
    await waitFor(`test Redis on port ${this.port}`, async () => ((await this.cli('ping')) ? true : undefined), 10_000, 50);
  }

  cli(...args: string[]): Promise<boolean> {
    const auth = this.password ? ['--no-auth-warning', '-a', this.password] : [];
    return succeeds('redis-cli', ['-p', String(this.port), ...auth, ...args], { timeoutMs: 3000, ...(this.netns ? { netns: this.netns } : {}) });
  }

  /** Stops the server (a Redis outage begins), saving its data to disk as a production Redis would; launch() reloads it. */
  async stop(): Promise<void> {
    const pid = Number((await readFile(join(this.dir, 'redis.pid'), 'utf8').catch(() => '0')).trim());
    if (pid > 0 && alive(pid)) {
      await this.cli('shutdown', 'save');
      for (let i = 0; i < 100 && alive(pid); i++) await sleep(50);
      if (alive(pid)) process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 100 && alive(pid); i++) await sleep(50);
    }
  }

  /** Freezes the server (SIGSTOP), as a stalled Redis: connections stay open, nothing answers. */
  async pause(): Promise<void> {
    process.kill(await this.pid(), 'SIGSTOP');
  }

  async resume(): Promise<void> {
    process.kill(await this.pid(), 'SIGCONT');
  }

  private async pid(): Promise<number> {
    const pid = Number((await readFile(join(this.dir, 'redis.pid'), 'utf8').catch(() => '0')).trim());
    if (!(pid > 0)) throw new Error(`test Redis on port ${this.port} has no pid file`);
    return pid;
  }

  async close(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}
