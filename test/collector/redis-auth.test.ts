import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { connectChecked, connectDaemon, RedisConnectError } from '../../src/config/redis.js';
import { portFree, redisServerArgs } from '../../src/lab/redis.js';
import { run, sleep, waitFor } from '../../src/util/exec.js';
import { alive } from '../../src/util/process.js';
import { TestRedis } from '../helpers/redis.js';

const PASSWORD = 's3cret-for-the-test';
let server: TestRedis;
let dir: string;

before(async () => {
  server = await TestRedis.start(undefined, PASSWORD);
  dir = await mkdtemp(join(tmpdir(), 'vc-auth-'));
});
after(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

/** A logger whose lines the test reads. */
function capture() {
  const lines: { level: number; msg: string }[] = [];
  const log = pino({ level: 'debug', base: undefined }, { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) });
  return { log, lines };
}

test('a command connects with the password (given or from a file), and says what to do when it is wrong or missing', async () => {
  const ok = await connectChecked(server.url, { password: PASSWORD });
  assert.equal(await ok.ping(), 'PONG');
  ok.disconnect();
  const file = join(dir, 'pw');
  await writeFile(file, `${PASSWORD}\n`, { mode: 0o600 });
  const viaFile = await connectChecked(server.url, { passwordFile: file });
  assert.equal(await viaFile.ping(), 'PONG');
  viaFile.disconnect();
  const inUrl = await connectChecked(`redis://:${PASSWORD}@127.0.0.1:${server.port}`, undefined);
  assert.equal(await inUrl.ping(), 'PONG');
  inUrl.disconnect();

  const wrong = await connectChecked(`redis://:url-secret@127.0.0.1:${server.port}`, { password: 'not-it' }).then(
    () => assert.fail('connected'),
    (e: unknown) => e,
  );
  assert.ok(wrong instanceof RedisConnectError);
  assert.match(wrong.message, /^NOAUTH\/WRONGPASS: Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ refused the credentials .*: check redis\.password/);
  assert.doesNotMatch(wrong.message, /not-it|url-secret/);
  const none = await connectChecked(server.url, undefined).then(
    () => assert.fail('connected'),
    (e: unknown) => e as Error,
  );
  assert.match(none.message, /^NOAUTH\/WRONGPASS: Redis at redis:\/\/127\.0\.0\.1:\d+ needs a password and none was given: check redis\.password/);
});

test('a daemon with a wrong password keeps retrying with a warning, and connects once the password matches', async () => {
  const { log, lines } = capture();
  const redis = connectDaemon(server.url, { password: 'next-password' }, log);
  try {
    await waitFor('the warning', async () => (lines.some((l) => l.level === 40) ? true : undefined), 10_000, 50);
    const warn = lines.find((l) => l.level === 40)!;
    assert.match(warn.msg, /^NOAUTH\/WRONGPASS: .*check redis\.password.*; retrying/);
    assert.doesNotMatch(JSON.stringify(lines), /next-password|s3cret/);
    await sleep(1500);
    assert.notEqual(redis.status, 'end', 'still trying');
    assert.equal(lines.filter((l) => l.level === 40).length, 1, 'said once, not at every retry');
    // The operator fixes the server side: the daemon gets in without a restart.
    await run('redis-cli', ['-p', String(server.port), '--no-auth-warning', '-a', PASSWORD, 'config', 'set', 'requirepass', 'next-password']);
    await waitFor('the daemon connection', async () => (redis.status === 'ready' ? true : undefined), 10_000, 50);
    assert.equal(await redis.ping(), 'PONG');
  } finally {
    redis.disconnect();
    await run('redis-cli', ['-p', String(server.port), '--no-auth-warning', '-a', 'next-password', 'config', 'set', 'requirepass', PASSWORD]);
  }
});

test('TLS: rediss:// with our CA, a client certificate, and a clear message without the CA', async () => {
  // A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl.
  const p = (n: string) => join(dir, n);
  const ossl = (...args: string[]) => run('openssl', args, { timeoutMs: 30_000 });
  await ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=vc-test-ca', '-keyout', p('ca.key'), '-out', p('ca.pem'));
  await writeFile(p('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  for (const who of ['server', 'client']) {
    await ossl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${who}`, '-keyout', p(`${who}.key`), '-out', p(`${who}.csr`));
    await ossl('x509', '-req', '-in', p(`${who}.csr`), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', p('san.ext'), '-out', p(`${who}.pem`));
  }
  let port = 0;
  for (let i = 0; i < 50 && !port; i++) {
    const c = 20000 + Math.floor(Math.random() * 20000);
    if (await portFree(c)) port = c;
  }
  await run('redis-server', [
    ...redisServerArgs({ port: 0, bind: '127.0.0.1', dir, pidfile: p('tls.pid'), logfile: p('tls.log') }),
    '--tls-port',
    String(port),
    '--tls-cert-file',
    p('server.pem'),
    '--tls-key-file',
    p('server.key'),
    '--tls-ca-cert-file',
    p('ca.pem'),
    '--tls-auth-clients',
    'optional',
    '--requirepass',
    PASSWORD,
  ]);
  try {
    const url = `rediss://127.0.0.1:${port}`;
    const r = await waitFor('the TLS Redis', async () => connectChecked(url, { password: PASSWORD, tls: { ca: p('ca.pem') } }).catch(() => undefined), 10_000, 100);
    assert.equal(await r.ping(), 'PONG');
    r.disconnect();
    const withCert = await connectChecked(url, { password: PASSWORD, tls: { ca: p('ca.pem'), cert: p('client.pem'), key: p('client.key') } });
    assert.equal(await withCert.ping(), 'PONG');
    withCert.disconnect();
    const untrusted = await connectChecked(url, { password: PASSWORD }).then(
      () => assert.fail('connected without the CA'),
      (e: Error) => e,
    );
    assert.match(untrusted.message, /^TLS with Redis at rediss:\/\/127\.0\.0\.1:\d+ failed \(.*(certificate|self.signed).*\): check redis\.tls\.ca/i);
    const plain = await connectChecked(`redis://127.0.0.1:${port}`, { password: PASSWORD }, 2000).then(
      () => assert.fail('connected in clear'),
      (e: Error) => e,
    );
    assert.match(plain.message, /rediss:\/\/|no answer|closed/);
  } finally {
    const pid = Number((await readFile(p('tls.pid'), 'utf8').catch(() => '0')).trim());
    if (pid > 0 && alive(pid)) process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && pid > 0 && alive(pid); i++) await sleep(50);
  }
});
