import { randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { alive } from '../util/process.js';
import { join } from 'node:path';
import { run, succeeds, waitFor } from '../util/exec.js';
import { hostLibvirtPki, hostQemuPki } from './pki.js';
import { hostDir } from './state.js';
import type { LabHost, LabSettings } from './topology.js';

/** The directories libvirt keeps per host; each lab host gets its own copy, bind-mounted in its mount namespace. */
const PRIVATE_DIRS = ['etc/libvirt', 'run/libvirt', 'var/lib/libvirt', 'var/cache/libvirt', 'var/log/libvirt'];

// Runs inside the host's fresh mount + UTS namespaces: the daemons it starts
// keep those namespaces alive, and see only this host's libvirt directories.
const START_SCRIPT = `set -e
S="$1"
hostname "$2"
for d in ${PRIVATE_DIRS.join(' ')}; do mount --bind "$S/$d" "/$d"; done
virtlogd -d -p "$S/virtlogd.pid"
libvirtd -d -l -p "$S/libvirtd.pid"
`;

/**
 * TLS only, as on a real cluster (docs/security.md): the lab CA's certificates
 * (src/lab/pki.ts); a client must hold a certificate the lab CA signed.
 */
function libvirtdConf(uuid: string, pki: string): string {
  return `# virt-cohort lab host: TLS only, clients need a certificate of the lab's CA
listen_tls = 1
listen_tcp = 0
listen_addr = "0.0.0.0"
auth_tls = "none"
tls_no_verify_certificate = 0
ca_file = "${pki}/cacert.pem"
cert_file = "${pki}/servercert.pem"
key_file = "${pki}/serverkey.pem"
unix_sock_group = "root"
host_uuid = "${uuid}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
`;
}

// user=root avoids ~48 s of capability re-probing per domain start on hosts
// where /dev/kvm exists but does not work; no cgroups because the lab's hosts
// share one kernel, and a migrating VM exists on two of them at once.
// default_tls_x509_cert_dir: the certificates of encrypted migrations (virsh migrate --tls).
const qemuConf = (pki: string) => `user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "file"
default_tls_x509_cert_dir = "${pki}"
default_tls_x509_verify = 1
`;

export async function startLibvirtd(lab: LabSettings, h: LabHost): Promise<void> {
  const dir = hostDir(lab.name, h.name);
  for (const d of PRIVATE_DIRS) {
    await mkdir(join(dir, d), { recursive: true });
    await mkdir(`/${d}`, { recursive: true });
  }
  await mkdir(join(dir, 'etc/libvirt/qemu'), { recursive: true });
  await writeFile(join(dir, 'etc/libvirt/libvirtd.conf'), libvirtdConf(randomUUID(), hostLibvirtPki(lab.name, h.name)));
  await writeFile(join(dir, 'etc/libvirt/qemu.conf'), qemuConf(hostQemuPki(lab.name, h.name)));
  await writeFile(join(dir, 'etc/libvirt/virtlogd.conf'), 'log_outputs = "3:file:/var/log/libvirt/virtlogd.log"\n');
  await run('unshare', ['--mount', '--uts', '--propagation', 'private', 'sh', '-c', START_SCRIPT, 'sh', dir, h.netns], {
    netns: h.netns,
  });
  await waitFor(
    `libvirtd of lab host ${h.name} (${h.uri}); see ${join(dir, 'var/log/libvirt/libvirtd.log')}`,
    async () => ((await succeeds('virsh', ['-c', h.uri, 'version'], { timeoutMs: 10_000 })) ? true : undefined),
    120_000,
    250,
  );
}

export const libvirtdPidFile = (lab: LabSettings, h: LabHost) => join(hostDir(lab.name, h.name), 'libvirtd.pid');
export const virtlogdPidFile = (lab: LabSettings, h: LabHost) => join(hostDir(lab.name, h.name), 'virtlogd.pid');

/**
 * Starts the host's libvirtd again after it was stopped (a test of failed
 * migrations), inside the mount and UTS namespaces its virtlogd still holds.
 */
export async function restartLibvirtd(lab: LabSettings, h: LabHost, opts: { waitForAnswer?: boolean } = {}): Promise<void> {
  const logd = Number((await readFile(virtlogdPidFile(lab, h), 'utf8')).trim());
  if (!(logd > 0) || !alive(logd)) throw new Error(`virtlogd of lab host ${h.name} is not running: recreate the lab`);
  await run('nsenter', [`--target=${logd}`, '--mount', '--uts', `--net=/run/netns/${h.netns}`, '--', 'libvirtd', '-d', '-l', '-p', libvirtdPidFile(lab, h)]);
  if (opts.waitForAnswer === false) return;
  await waitFor(`libvirtd of lab host ${h.name} (${h.uri})`, async () => ((await succeeds('virsh', ['-c', h.uri, 'version'], { timeoutMs: 10_000 })) ? true : undefined), 60_000, 250);
}
