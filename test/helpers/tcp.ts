// Bulk TCP for the sensor tests; run inside a network namespace with nsenter.
//   node tcp.js sink --port P              (prints "ready", then the byte count at each connection's end)
//   node tcp.js send --to ADDR --port P --bytes N
import { createConnection, createServer } from 'node:net';
import { parseArgs } from 'node:util';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { to: { type: 'string' }, port: { type: 'string' }, bytes: { type: 'string' } },
});
const port = Number(values.port ?? 9998);

if (positionals[0] === 'sink') {
  createServer((c) => {
    let n = 0;
    c.on('data', (d) => (n += d.length));
    c.on('end', () => process.stdout.write(`${n}\n`));
  }).listen(port, () => process.stdout.write('ready\n'));
} else {
  const total = Number(values.bytes ?? 1 << 20);
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const sock = createConnection({ host: values.to!, port }, async () => {
    for (let sent = 0; sent < total; sent += chunk.length) {
      const part = chunk.subarray(0, Math.min(chunk.length, total - sent));
      if (!sock.write(part)) await new Promise((r) => sock.once('drain', r));
    }
    sock.end();
  });
  sock.on('close', () => process.exit(0));
}
