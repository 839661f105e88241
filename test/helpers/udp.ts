// Sends or sinks UDP datagrams; run inside a network namespace with nsenter.
//   node udp.js send --to ADDR[,ADDR...] --port P --count N --size S
//   node udp.js sink --port P            (prints "ready", then counts until SIGTERM and prints the count)
import { createSocket } from 'node:dgram';
import { parseArgs } from 'node:util';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { to: { type: 'string' }, port: { type: 'string' }, count: { type: 'string' }, size: { type: 'string' }, 'interval-ms': { type: 'string' } },
});
const port = Number(values.port ?? 9999);

if (positionals[0] === 'sink') {
  let n = 0;
  const s4 = createSocket('udp4')
    .on('message', () => n++)
    .bind(port, '0.0.0.0');
  const s6 = createSocket({ type: 'udp6', ipv6Only: true })
    .on('message', () => n++)
    .bind(port, '::');
  s4.once('listening', () => process.stdout.write('ready\n'));
  process.on('SIGTERM', () => {
    process.stdout.write(`${n}\n`);
    s4.close();
    s6.close();
  });
} else {
  const targets = (values.to ?? '').split(',').filter(Boolean);
  const count = Number(values.count ?? 1);
  const payload = Buffer.alloc(Number(values.size ?? 64), 0x5a);
  const sock = createSocket(targets[0]?.includes(':') ? 'udp6' : 'udp4');
  // Paced in small bursts so that no socket or qdisc queue overflows: every datagram must hit the wire.
  // --interval-ms N sends one round (a datagram to each target) every N ms instead.
  const interval = Number(values['interval-ms'] ?? 0);
  for (let i = 0; i < count; i++) {
    for (const t of targets) await new Promise<void>((res, rej) => sock.send(payload, port, t, (e) => (e ? rej(e) : res())));
    if (interval > 0) await new Promise((r) => setTimeout(r, interval));
    else if (i % 50 === 49) await new Promise((r) => setTimeout(r, 1));
  }
  sock.close();
}
