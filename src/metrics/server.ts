import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ListenError } from '../util/errors.js';
import { logger } from '../util/log.js';
import { collectProcessMetrics, registry } from './registry.js';

const log = logger('metrics');

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

/** GET /metrics in the Prometheus text format; `port` 0 picks a free one (tests). */
export async function startMetricsServer(port: number, bind = '127.0.0.1'): Promise<MetricsServer> {
  collectProcessMetrics();
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || (path !== '/metrics' && path !== '/')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('see /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: Error) => {
        log.error({ err }, 'cannot render the metrics');
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new ListenError('metrics', bind, port, err.code ?? err.message)));
    server.listen(port, bind, () => resolve());
  });
  const a = server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  const url = `http://${host}:${a.port}/metrics`;
  log.info({ url }, 'metrics served');
  return { url, close: () => new Promise<void>((r) => server.close(() => r())) };
}
