import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:tls';
import { makeCert } from '../../src/lab/pki.js';
import { probeTls } from '../../src/libvirt/tls.js';
import { CertWatch } from '../../src/manager/certs.js';

// The certificate checks of doctor and the manager (src/libvirt/tls.ts) against real TLS servers on
// loopback that ask for a client certificate as libvirtd does, with certificates made by certtool.
let dir: string;
let ca: { cert: string; key: string };
let pki: string;
const servers: Server[] = [];

/** A TLS server on 127.0.0.1 presenting `own`, asking for a client certificate of the CA; its URI for the lab client. */
async function serve(own: { cert: string; key: string }): Promise<string> {
  const s = createServer({ key: await readFile(own.key), cert: await readFile(own.cert), ca: await readFile(ca.cert), requestCert: true, rejectUnauthorized: true }, (sock) => sock.end());
  s.on('tlsClientError', () => undefined);
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `qemu+tls://127.0.0.1:${(s.address() as AddressInfo).port}/system?pkipath=${pki}`;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vc-tls-'));
  ca = await makeCert(join(dir, 'ca'), { cn: 'test CA', ca: true });
  const client = await makeCert(join(dir, 'client'), { cn: 'manager', client: true }, ca);
  pki = join(dir, 'pki');
  await mkdir(pki);
  await copyFile(ca.cert, join(pki, 'cacert.pem'));
  await copyFile(client.cert, join(pki, 'clientcert.pem'));
  await copyFile(client.key, join(pki, 'clientkey.pem'));
});

after(async () => {
  for (const s of servers) s.close();
  await rm(dir, { recursive: true, force: true });
});

test('a host certificate signed by the CA, valid and naming the host, passes', async () => {
  const uri = await serve(await makeCert(join(dir, 'good'), { cn: '127.0.0.1', ips: ['127.0.0.1'], server: true }, ca));
  const p = await probeTls(uri);
  assert.equal(p.ok, true, p.why);
  assert.ok(p.notAfter && Date.parse(p.notAfter) > Date.now());
});

test('a certificate naming another host, an expired one, one another CA signed: each refused with why', async () => {
  const wrong = await probeTls(await serve(await makeCert(join(dir, 'wrong'), { cn: '10.9.9.9', ips: ['10.9.9.9'], server: true }, ca)));
  assert.equal(wrong.ok, false);
  assert.match(wrong.why ?? '', /^127\.0\.0\.1: its certificate names IP Address:10\.9\.9\.9, not 127\.0\.0\.1$/);
  const expired = await probeTls(await serve(await makeCert(join(dir, 'old'), { cn: '127.0.0.1', ips: ['127.0.0.1'], server: true, days: -1 }, ca)));
  assert.match(expired.why ?? '', /^127\.0\.0\.1: its certificate expired on 2020-01-31/);
  const otherCa = await makeCert(join(dir, 'other-ca'), { cn: 'other CA', ca: true });
  const foreign = await probeTls(await serve(await makeCert(join(dir, 'foreign'), { cn: '127.0.0.1', ips: ['127.0.0.1'], server: true }, otherCa)));
  assert.match(foreign.why ?? '', /its certificate is not signed by the CA in .*cacert\.pem/);
});

test('no listener, or no client certificates: the reason and the fix', async () => {
  const closed = await serve(await makeCert(join(dir, 'gone'), { cn: '127.0.0.1', ips: ['127.0.0.1'], server: true }, ca));
  servers.pop()!.close();
  assert.match((await probeTls(closed)).why ?? '', /ECONNREFUSED \(libvirtd does not listen for TLS there\)/);
  const none = await probeTls(`qemu+tls://127.0.0.1:1/system?pkipath=${join(dir, 'nothing')}`);
  assert.match(none.why ?? '', /the client's certificates cannot be read .*put the CA, client certificate and key where libvirt looks/);
});

test('the manager looks at each TLS host at most once a minute, and leaves a failing one alone', async () => {
  let probes = 0;
  const watch = new CertWatch(60_000, async (uri) => {
    probes++;
    return uri.includes('bad') ? { ok: false, why: 'bad: its certificate expired on 2020-01-31T00:00:00.000Z' } : { ok: true };
  });
  const routes = new Map([
    ['good', { uri: 'qemu+tls://good/system' }],
    ['bad', { uri: 'qemu+tls://bad/system' }],
    ['ssh', { uri: 'qemu+ssh://root@ssh/system' }],
  ]);
  const first = await watch.refused(routes);
  assert.deepEqual(
    first.map((x) => x.host),
    ['bad'],
  );
  assert.match(first[0]!.why, /^its libvirt TLS certificate fails \(bad: its certificate expired/);
  await watch.refused(routes);
  assert.equal(probes, 2, 'two TLS hosts, looked at once each within the minute; the ssh one not at all');
});
