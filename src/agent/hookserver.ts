import { chmod, mkdir, unlink } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { dirname } from 'node:path';
import { logger } from '../util/log.js';

const log = logger('hooks');

/** What hooks/qemu sends: one JSON line per libvirt hook call. */
export interface HookEvent {
  v: 1;
  source: 'hook';
  domain: string;
  operation: string;
  subOperation: string;
  extra: string;
  at: number;
  uuid: string | null;
  interfaces: { mac: string | null; tap: string | null }[];
}

const MAX_LINE = 1024 * 1024;

/**
 * The agent end of the hook socket: root-only (mode 0600 in a 0700
 * directory), one line per connection, anything malformed logged and dropped.
 */
export async function listenHooks(path: string, onEvent: (e: HookEvent) => void): Promise<Server> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  // A socket file left by a killed agent would make listen fail with EADDRINUSE.
  await unlink(path).catch(() => undefined);
  const server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.setTimeout(2000, () => sock.destroy());
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE) {
        log.warn({ bytes: buf.length }, 'hook message too long: dropped');
        sock.destroy();
      }
    });
    sock.on('end', () => {
      const line = buf.split('\n')[0]!.trim();
      if (!line) return;
      const e = parseEvent(line);
      if (e) onEvent(e);
      else log.warn({ line: line.slice(0, 200) }, 'malformed hook message: dropped');
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  return server;
}

export function parseEvent(line: string): HookEvent | undefined {
  let e: unknown;
  try {
    e = JSON.parse(line);
  } catch {
    return undefined;
  }
  const o = e as Partial<HookEvent>;
  if (o?.v !== 1 || typeof o.domain !== 'string' || !o.domain || typeof o.operation !== 'string') return undefined;
  return {
    v: 1,
    source: 'hook',
    domain: o.domain,
    operation: o.operation,
    subOperation: String(o.subOperation ?? ''),
    extra: String(o.extra ?? ''),
    at: Number(o.at) || Date.now(),
    uuid: typeof o.uuid === 'string' ? o.uuid : null,
    interfaces: Array.isArray(o.interfaces) ? o.interfaces : [],
  };
}
