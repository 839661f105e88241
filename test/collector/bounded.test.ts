import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from '../../src/paths.js';
import { alive } from '../../src/util/process.js';
import { TestRedis } from '../helpers/redis.js';

// Commands against a Redis that is down, or that stops answering (SIGSTOP):
// each gives up within its bound with a clear error, instead of hanging.
const CLI = join(packageRoot, 'dist', 'src', 'cli', 'main.js');
const COMMANDS = [['stats'], ['stats', '--hosts'], ['groups'], ['plan'], ['history'], ['manager', '--once', '--no-config'], ['doctor', '--no-config']];

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stderr: string; stdout: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

describe('commands when Redis is away', { concurrency: 1 }, () => {
  let redis: TestRedis;
  let pid = 0;
  before(async () => {
    redis = await TestRedis.start();
    pid = Number((await readFile(join(redis.dir, 'redis.pid'), 'utf8')).trim());
  });
  after(async () => {
    if (pid && alive(pid)) process.kill(pid, 'SIGCONT');
    await redis?.close();
  });

  it('a Redis that stops answering: every command exits within its bound (3 s here) with a clear error', async () => {
    process.kill(pid, 'SIGSTOP');
    try {
      const results = await Promise.all(COMMANDS.map((c) => cli([...c, '--redis', redis.url], { VIRT_COHORT_REDIS_TIMEOUT: '3' })));
      results.forEach((r, i) => {
        const what = COMMANDS[i]!.join(' ');
        assert.notEqual(r.code, 0, `${what} failed`);
        // The connect and each command are bounded: a few of them in a row, and Node's start.
        assert.ok(r.ms < 20_000, `${what} returned in ${r.ms} ms`);
        assert.match(r.stdout + r.stderr, /Redis|redis/, `${what} names Redis: ${r.stderr}`);
        assert.doesNotMatch(r.stderr, /unexpected error/, `${what}: ${r.stderr}`);
      });
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  });

  it('a Redis that is down: every command exits at once with what to do', async () => {
    await redis.stop();
    const results = await Promise.all(COMMANDS.map((c) => cli([...c, '--redis', redis.url])));
    results.forEach((r, i) => {
      const what = COMMANDS[i]!.join(' ');
      assert.notEqual(r.code, 0, `${what} failed`);
      assert.ok(r.ms < 15_000, `${what} returned in ${r.ms} ms`);
      assert.doesNotMatch(r.stderr, /unexpected error/, `${what}: ${r.stderr}`);
      assert.match(r.stdout + r.stderr, /refused|not reachable|cannot connect|no answer|stopped answering/i, `${what}: ${r.stderr}`);
    });
  });
});
