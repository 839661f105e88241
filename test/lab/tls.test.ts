import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { checkReach } from '../../src/doctor/routes.js';
import { probeTls } from '../../src/libvirt/tls.js';
import type { DoctorContext } from '../../src/doctor/checks.js';
import { labRedisUrl, labRoutes } from '../../src/lab/agents.js';
import { labEnvironment } from '../../src/lab/environment.js';
import { labDown, labUp } from '../../src/lab/lab.js';
import { libvirtdPidFile, restartLibvirtd } from '../../src/lab/libvirtd.js';
import { hostCertSpec, installHostCert, labCa, makeCert } from '../../src/lab/pki.js';
import type { LabState } from '../../src/lab/state.js';
import { domainName, hosts, type LabHost } from '../../src/lab/topology.js';
import { addVm } from '../../src/lab/vm.js';
import { readHistory } from '../../src/manager/history.js';
import { LeaderLock } from '../../src/manager/lock.js';
import { DEFAULT_MANAGER, Manager } from '../../src/manager/manager.js';
import { parseEnvironment } from '../../src/placement/index.js';
import { packageRoot } from '../../src/paths.js';
import { succeeds, waitFor } from '../../src/util/exec.js';
import { alive } from '../../src/util/process.js';
import { uniqueName } from '../helpers/names.js';

// libvirt over TLS on a lab of 2 sites x 1 host: libvirtd listens on TLS only and asks every client for a
// certificate of the lab's CA; migrations between sites send their memory over TLS (manager.encrypt
// between-sites); a host whose certificate is wrong is named by doctor and left alone by the manager.
const CLI = join(packageRoot, 'dist', 'src', 'cli', 'main.js');

function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 300_000 }, (e, out, err) => resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out, err }));
  });
}

describe('libvirt over TLS on a lab', { concurrency: 1 }, () => {
  const name = uniqueName();
  let lab: LabState;
  let a1: LabHost;
  let b1: LabHost;
  let redis: Redis;
  let other: string;

  /** Re-issues `h`'s certificate from `spec` (signed by the lab CA) and restarts its libvirtd, which reads it at start. */
  async function reissue(h: LabHost, spec: Parameters<typeof makeCert>[1]): Promise<void> {
    const ca = labCa(lab.name);
    await installHostCert(lab, h, await makeCert(join(other, `reissue-${h.name}-${Date.now()}`), spec, ca), ca.cert);
    const pid = Number((await readFile(libvirtdPidFile(lab, h), 'utf8')).trim());
    process.kill(pid, 'SIGTERM');
    await waitFor('libvirtd to stop', async () => (alive(pid) ? undefined : true), 30_000, 100);
    // It answers the lab client only when its certificate names it: up is judged by its pid file here.
    await restartLibvirtd(lab, h, { waitForAnswer: false });
    await waitFor('libvirtd to start', async () => ((await readFile(libvirtdPidFile(lab, h), 'utf8').catch(() => '')) ? true : undefined), 30_000, 100);
    await waitFor('libvirtd to listen', async () => ((await probeTls(h.uri)).why?.includes('ECONNREFUSED') ? undefined : true), 30_000, 100);
  }

  before(async () => {
    lab = await labUp({ name, sites: 2, hostsPerSite: 1, delayMs: 5, rateMbit: 1000, periodSeconds: 5 });
    [a1, b1] = hosts(lab) as [LabHost, LabHost];
    await addVm(lab.name, { name: 'vm1', host: 'a1', index: 1, pattern: 'idle', cluster: 1, rate: 1, size: 64, memoryMiB: 128, wait: true });
    redis = new Redis(labRedisUrl(lab), { maxRetriesPerRequest: null });
    redis.on('error', () => undefined);
    other = await mkdtemp(join(tmpdir(), 'vc-tls-'));
  });

  after(async () => {
    redis?.disconnect();
    await labDown(name);
    if (other) await rm(other, { recursive: true, force: true });
  });

  it('every libvirtd refuses plain TCP and a client whose certificate another CA signed; the lab client gets in', async () => {
    const strangerCa = await makeCert(join(other, 'ca'), { cn: 'stranger CA', ca: true });
    const stranger = await makeCert(join(other, 'client'), { cn: 'stranger client', client: true }, strangerCa);
    const pki = join(other, 'pki');
    await mkdir(pki, { recursive: true });
    // The stranger trusts the lab CA (it can check the server) but holds a certificate the lab CA never signed.
    await copyFile(labCa(lab.name).cert, join(pki, 'cacert.pem'));
    await copyFile(stranger.cert, join(pki, 'clientcert.pem'));
    await copyFile(stranger.key, join(pki, 'clientkey.pem'));
    for (const h of [a1, b1]) {
      assert.ok(await succeeds('virsh', ['-c', h.uri, 'version'], { timeoutMs: 15_000 }), `${h.name}: the lab's client is let in`);
      assert.ok(!(await succeeds('virsh', ['-c', `qemu+tcp://${h.mgmtIp}/system`, 'version'], { timeoutMs: 15_000 })), `${h.name}: plain TCP refused`);
      assert.ok(!(await succeeds('virsh', ['-c', `qemu+tls://${h.mgmtIp}/system?pkipath=${pki}`, 'version'], { timeoutMs: 15_000 })), `${h.name}: a stranger's certificate refused`);
    }
  });

  it('virt-cohort migrate moves a VM between sites with its memory over TLS, and history says so', async () => {
    const r = await cli('migrate', domainName(lab, 'vm1'), 'b1', '--lab', lab.name);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /vm1: a1 -> b1 ok in [\d.]+ s, memory over TLS/);
    const [rec] = await readHistory(redis, 1, domainName(lab, 'vm1'));
    assert.equal(rec?.encrypted, true, JSON.stringify(rec));
  });

  // An expired certificate is judged the same way (src/libvirt/tls.ts); libvirtd itself refuses to start
  // with one, so test/collector/tls.test.ts shows that case on a TLS server that does start.
  it('a host whose certificate names another host is named by doctor, left alone by the manager, refused by migrate', async () => {
    const ctx = { redisUrl: labRedisUrl(lab), routes: labRoutes(lab) } as DoctorContext;
    assert.equal((await checkReach(ctx)).status, 'ok');
    const ip = (h: LabHost) => h.mgmtIp.replaceAll('.', '\\.');
    try {
      await reissue(b1, hostCertSpec(a1));
      const wrong = await checkReach(ctx);
      assert.equal(wrong.status, 'fail');
      assert.match(wrong.detail, new RegExp(`b1: ${ip(b1)}: its certificate names .*${ip(a1)}.*, not ${ip(b1)}`));
      const m = new Manager(redis, { ...DEFAULT_MANAGER, env: parseEnvironment(labEnvironment(lab), 'lab'), ...labRoutes(lab) }, new LeaderLock(redis, 10_000));
      try {
        const r = await m.round();
        assert.match(r.refused.find((x) => x.host === 'b1')?.why ?? '', /its libvirt TLS certificate fails .*its certificate names/, JSON.stringify(r.refused));
      } finally {
        await m.stop();
      }
      const migrate = await cli('migrate', domainName(lab, 'vm1'), 'a1', '--lab', lab.name, '--force');
      assert.equal(migrate.code, 2, migrate.err);
      assert.match(migrate.err, /host b1: its libvirt TLS certificate fails \(.*its certificate names/);
    } finally {
      await reissue(b1, hostCertSpec(b1));
    }
    assert.equal((await checkReach(ctx)).status, 'ok', 'a good certificate again: reachable again');
  });
});
