import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { installHook } from '../../src/agent/hook.js';
import type { DoctorReport } from '../../src/doctor/doctor.js';
import { packageRoot } from '../../src/paths.js';
import { TestRedis } from '../helpers/redis.js';

const CLI = join(packageRoot, 'dist', 'src', 'cli', 'main.js');
const PASSWORD = 'doctor-secret-pw';
let server: TestRedis;
let dir: string;

before(async () => {
  server = await TestRedis.start(undefined, PASSWORD);
  dir = await mkdtemp(join(tmpdir(), 'vc-doctor-'));
});
after(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

/** The real command, as an operator types it; resolves with its exit code and output. */
function doctor(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const clean = { ...process.env, VIRT_COHORT_CONFIG: undefined, VIRT_COHORT_REDIS: undefined, VIRT_COHORT_REDIS_PASSWORD: undefined, ...env };
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'doctor', ...args], { env: clean, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function setup(password: string) {
  const pw = join(dir, `pw-${password}`);
  await writeFile(pw, `${password}\n`, { mode: 0o600 });
  const stateDir = join(dir, 'state');
  await mkdir(join(stateDir, 'spool'), { recursive: true });
  for (const p of [1, 2, 3]) await writeFile(join(stateDir, 'spool', `${String(p).padStart(12, '0')}-h1.json`), '{}');
  const hooksDir = join(dir, 'hooks');
  const socket = join(dir, 'agent.sock');
  await installHook(hooksDir, socket);
  const config = join(dir, `config-${password}.yaml`);
  await writeFile(
    config,
    ['agent:', `  stateDir: ${stateDir}`, `  socket: ${socket}`, '  libvirtUri: qemu:///system', 'redis:', `  url: redis://127.0.0.1:${server.port}`, `  passwordFile: ${pw}`, ''].join('\n'),
  );
  return { config, hooksDir };
}

const byId = (r: DoctorReport, id: string) => r.checks.find((c) => c.id === id) ?? assert.fail(`no ${id} check`);

test('doctor checks this host against a password-protected Redis, says what to type, and exits non-zero on a failure', async () => {
  const { config, hooksDir } = await setup(PASSWORD);
  const pinRoot = join(dir, 'pins');
  const out = await doctor(['--json', '--config', config, '--hooks-dir', hooksDir, '--pin-root', pinRoot, '--libvirt-uri', 'qemu:///system']);
  const r = JSON.parse(out.stdout) as DoctorReport;
  assert.equal(byId(r, 'config').status, 'ok');
  const redis = byId(r, 'redis');
  assert.equal(redis.status, 'ok', redis.detail);
  assert.match(redis.detail, /^Redis \d+\.\d+\.\d+ at redis:\/\/127\.0\.0\.1:\d+ \(auth: password, tls: no\)$/);
  const clock = byId(r, 'clock');
  assert.equal(clock.status, 'ok', clock.detail);
  assert.match(clock.detail, /ms (behind|ahead of) Redis' \(round trip \d+ ms\)/);
  assert.equal(byId(r, 'hook').status, 'ok', byId(r, 'hook').detail);
  const spool = byId(r, 'spool');
  assert.equal(spool.status, 'warn');
  assert.match(spool.detail, /^3 report\(s\) waiting for Redis/);
  assert.ok(spool.fix);
  assert.equal(byId(r, 'pins').status, 'warn');
  assert.equal(byId(r, 'agent').status, 'warn');
  // No libvirt at qemu:///system on this machine: the check fails with its advice, and so does the command.
  const libvirt = byId(r, 'libvirt');
  if (libvirt.status === 'fail') {
    assert.match(libvirt.detail, /^cannot reach libvirt at qemu:\/\/\/system/);
    assert.match(libvirt.fix ?? '', /systemctl start libvirtd/);
    assert.equal(byId(r, 'taps').status, 'skip');
    assert.equal(r.ok, false);
    assert.equal(out.code, 1);
  } else {
    assert.match(libvirt.detail, /active domain/);
  }
  for (const c of r.checks) {
    assert.ok(['ok', 'warn', 'fail', 'skip'].includes(c.status));
    if (c.status === 'fail') assert.ok(c.fix, `${c.id} says what to type`);
  }
  assert.equal(r.ok, !r.checks.some((c) => c.status === 'fail'));
  assert.doesNotMatch(out.stdout + out.stderr, new RegExp(PASSWORD));

  const text = await doctor(['--config', config, '--hooks-dir', hooksDir, '--pin-root', pinRoot]);
  assert.match(text.stdout, /^virt-cohort doctor on \S+ at /);
  assert.match(text.stdout, /\[ ok \] Redis +Redis \d/);
  assert.match(text.stdout, /\[warn\] spool .*\n +fix: /);
  assert.equal(text.code, out.code);
});

test('doctor: a wrong Redis password and a broken configuration are failed checks with their fix, no secret shown', async () => {
  const { config, hooksDir } = await setup('wrong-one-pw');
  const out = await doctor(['--json', '--config', config, '--hooks-dir', hooksDir], { VIRT_COHORT_REDIS_PASSWORD: undefined });
  const r = JSON.parse(out.stdout) as DoctorReport;
  const redis = byId(r, 'redis');
  assert.equal(redis.status, 'fail');
  assert.match(redis.detail, /^NOAUTH\/WRONGPASS: Redis at redis:\/\/127\.0\.0\.1:\d+ refused the credentials/);
  assert.match(redis.fix ?? '', /check redis\.password/);
  assert.equal(byId(r, 'clock').status, 'skip');
  assert.equal(out.code, 1);
  assert.doesNotMatch(out.stdout + out.stderr, /wrong-one-pw|doctor-secret-pw/);

  const broken = join(dir, 'broken.yaml');
  await writeFile(broken, `redis:\n  url: redis://:${PASSWORD}@127.0.0.1:${server.port}\n  pasword: x\n`);
  const b = JSON.parse((await doctor(['--json', '--config', broken, '--hooks-dir', hooksDir])).stdout) as DoctorReport;
  const cfg = byId(b, 'config');
  assert.equal(cfg.status, 'fail');
  assert.match(cfg.detail, /broken\.yaml:3:3: unknown key 'redis\.pasword': did you mean 'password'\?/);
  assert.match(cfg.fix ?? '', /virt-cohort config check .*broken\.yaml/);
  assert.doesNotMatch(JSON.stringify(b), new RegExp(PASSWORD));
});
