import { createServer } from 'node:net';
import { join } from 'node:path';
import { run, waitFor, succeeds } from '../util/exec.js';
import { labDir } from './state.js';
import { rootIp, type LabSettings } from './topology.js';

export const redisPidFile = (name: string) => join(labDir(name), 'redis.pid');

/** The lab's Redis listens on loopback and on the management network, so every lab host reaches it. */
export async function startRedis(lab: LabSettings): Promise<void> {
  const dir = labDir(lab.name);
  await run('redis-server', [...redisServerArgs({ port: lab.redisPort, bind: `127.0.0.1 ${rootIp(lab)}`, dir }), '--protected-mode', 'no']);
  await waitFor(`the lab's Redis on port ${lab.redisPort} (see ${join(dir, 'redis.log')})`, async () => ((await redisPing(lab)) ? true : undefined), 10_000, 50);
}

/** A throw-away redis-server: no persistence, daemonized, its pid file, log and files in `dir` unless named. */
export function redisServerArgs(o: { port: number; bind: string; dir: string; pidfile?: string; logfile?: string }): string[] {
  return [
    '--port',
    String(o.port),
    '--bind',
    o.bind,
    '--save',
    '',
    '--appendonly',
    'no',
    '--daemonize',
    'yes',
    '--pidfile',
    o.pidfile ?? join(o.dir, 'redis.pid'),
    '--logfile',
    o.logfile ?? join(o.dir, 'redis.log'),
    '--dir',
    o.dir,
  ];
}

export function redisPing(lab: LabSettings): Promise<boolean> {
  return succeeds('redis-cli', ['-h', '127.0.0.1', '-p', String(lab.redisPort), 'ping'], { timeoutMs: 3000 });
}

/** True when nothing listens on the TCP port (checked by binding it). */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: '127.0.0.1' }, () => srv.close(() => resolve(true)));
  });
}
