import { spawn } from 'node:child_process';
import { access, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { guestDir, packageRoot } from '../paths.js';
import { UserError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { hostDir, labDir, type LabState, type VmSpec } from './state.js';
import { prefix } from './topology.js';

/**
 * Disk-backed Debian 12 guests for real applications (`lab vm add --image
 * debian`): the qcow2 base built from Debian's packages by
 * src/lab/debian/build.sh, an overlay per VM and a small read-only config
 * disk with the VM's keys and workload. Both sit in the lab's storage
 * directory, which every lab host sees at the same path, as NFS or Ceph would
 * give; libvirt cannot tell that a local file system is shared, so these
 * guests migrate with --unsafe (see migrateVm). With `disk: 'local'` the
 * overlay is the host's own instead (its private /var/lib/libvirt/images),
 * and a migration copies it (--copy-storage-all).
 */
export const debianBase = join(guestDir, 'debian', 'base.qcow2');
const buildScript = join(packageRoot, 'src', 'lab', 'debian', 'build.sh');

/** An MPI job: this VM launches it over ssh on itself and `ranks`, one process each. */
export interface MpiWorkload {
  kind: 'mpi';
  /** The other VMs' names, in rank order after this one. */
  ranks: string[];
  /** Iterations of the stencil (src/lab/debian/stencil.c); it verifies at the end. */
  iters: number;
  /** Bytes each rank sends each neighbour per iteration, beside the halo cells. */
  haloBytes: number;
}
/**
 * A multi-tier service (src/lab/debian/vcweb.py): the web tier and a load
 * generator on this VM, the application tier on tiers[0], Redis on tiers[1].
 */
export interface WebWorkload {
  kind: 'web';
  /** The application's VM, then Redis's. */
  tiers: string[];
  /** Requests the load generator sends in all; it checks every answer. */
  requests: number;
  /** Requests in flight at once. */
  clients: number;
}
export type Workload = MpiWorkload | WebWorkload;

const storageDir = (lab: string) => join(labDir(lab), 'storage');
const sharedDisk = (lab: string, vm: string) => join(storageDir(lab), `${vm}.qcow2`);
/** A local disk's path as its host's libvirt sees it: the same on every host, a different file on each. */
const LOCAL_IMAGES = 'var/lib/libvirt/images';
const localDisk = (lab: string, vm: string) => `/${LOCAL_IMAGES}/${prefix(lab)}-${vm}.qcow2`;
/** Where a VM's root overlay is, as the root namespace sees it when it is on `host`. */
export function diskFile(lab: string, vm: VmSpec, host: string): string {
  return vm.disk === 'local' ? join(hostDir(lab, host), localDisk(lab, vm.name)) : sharedDisk(lab, vm.name);
}
const configDiskOf = (lab: string, vm: string) => join(storageDir(lab), `${vm}.config.img`);

/**
 * Builds the image when it is missing or its sources changed (build.sh only
 * checks otherwise), passing its progress lines to `say`.
 */
export async function ensureDebianImage(say: (line: string) => void): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn('sh', [buildScript, join(guestDir, 'debian')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stdout.on('data', (b: Buffer) => {
      for (const line of b.toString().split('\n')) if (line.trim()) say(line);
    });
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.on('error', (e) => reject(new UserError(`cannot run ${buildScript}: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new UserError(`building the Debian guest image failed:\n${err.trim() || `build.sh exited with ${code}`}`));
    });
  });
}

/** A workload with its VMs, checked against the lab: they must exist and be other Debian guests. */
export function checkWorkload(lab: LabState, self: string, w: Workload): Workload {
  if (w.kind !== 'mpi' && w.kind !== 'web') throw new UserError(`unknown workload '${(w as { kind: string }).kind}': use mpi or web`);
  const [flag, vms] = w.kind === 'mpi' ? ['--ranks', w.ranks] : ['--tiers', w.tiers];
  if (w.kind === 'mpi' && !vms.length) throw new UserError('--workload mpi needs --ranks VM,VM...: the other lab VMs the job runs on (add them first, with --image debian)');
  if (w.kind === 'web' && vms.length !== 2) {
    throw new UserError(`--workload web needs --tiers APP,DB: the lab VMs that run the application and Redis (add them first, with --image debian); got ${vms.length}`);
  }
  for (const r of vms) {
    const spec = lab.vms[r];
    if (r === self) throw new UserError(`${flag} lists '${r}' itself: this VM runs ${w.kind === 'mpi' ? 'rank 0' : 'the web tier'}; list only the others`);
    if (!spec) throw new UserError(`${flag} names '${r}', which is not in lab '${lab.name}': add it first (virt-cohort lab vm add ${r} --image debian --host ...)`);
    if (spec.image !== 'debian') throw new UserError(`${flag} names '${r}', which is not a Debian guest: add it with --image debian`);
  }
  if (new Set(vms).size !== vms.length) throw new UserError(`${flag} lists a VM twice: ${vms.join(',')}`);
  if (w.kind === 'web') {
    if (!(Number.isInteger(w.requests) && w.requests >= 1)) throw new UserError(`--requests must be a whole number of at least 1 (got ${w.requests})`);
    if (!(Number.isInteger(w.clients) && w.clients >= 1 && w.clients <= 64)) throw new UserError(`--clients must be from 1 to 64 (got ${w.clients})`);
    return w;
  }
  if (!(Number.isInteger(w.iters) && w.iters >= 1)) throw new UserError(`--iters must be a whole number of at least 1 (got ${w.iters})`);
  if (!(Number.isInteger(w.haloBytes) && (w.haloBytes === 0 || (w.haloBytes >= 8 && w.haloBytes <= 1 << 20)))) {
    throw new UserError(`--halo-bytes must be 0 or from 8 to 1048576 (got ${w.haloBytes})`);
  }
  return w;
}

/**
 * The VM's overlay on the base and its config disk: hostname-independent
 * identity (the address rides on the kernel command line), a host key of its
 * own, the lab's ssh key (every guest trusts it, so mpirun reaches the ranks),
 * and the workload script.
 */
export async function prepareDebianDisks(lab: LabState, vm: VmSpec, host: string): Promise<void> {
  try {
    await access(debianBase);
  } catch {
    throw new UserError(`the Debian guest image is missing (${debianBase}): it is built on first use of --image debian; run that again`);
  }
  const dir = storageDir(lab.name);
  await mkdir(dir, { recursive: true });
  const key = await labKey(lab);
  const tmp = await mkdtemp(join(tmpdir(), 'vc-config-'));
  try {
    const c = join(tmp, 'config');
    await mkdir(c);
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', vm.name, '-f', join(c, 'ssh_host_ed25519_key')]);
    await run('cp', [key, join(c, 'id_ed25519')]);
    await run('cp', [`${key}.pub`, join(c, 'authorized_keys')]);
    await writeFile(join(c, 'hosts'), `${vm.ip} ${vm.name}\n`);
    await writeFile(join(c, 'workload'), vm.workload ? workloadScript(lab, vm, vm.workload) : '');
    await rm(configDiskOf(lab.name, vm.name), { force: true });
    await run('mke2fs', ['-q', '-t', 'ext4', '-L', 'vcconfig', '-d', c, configDiskOf(lab.name, vm.name), '8M']);
    await createOverlay(diskFile(lab.name, vm, host));
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** A fresh qcow2 overlay on the base (a migration's destination gets one too, which --copy-storage-all fills). */
export async function createOverlay(file: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await rm(file, { force: true });
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', debianBase, file]);
}

/** The lab's own ssh key pair, made once per lab. */
async function labKey(lab: LabState): Promise<string> {
  const key = join(labDir(lab.name), 'ssh', 'id_ed25519');
  try {
    await access(key);
  } catch {
    await mkdir(join(labDir(lab.name), 'ssh'), { recursive: true, mode: 0o700 });
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `virt-cohort lab ${lab.name}`, '-f', key]);
  }
  return key;
}

/** Shell lines that wait until each address's sshd answers (the other guests boot on their own). */
function waitForSsh(prefix: string, ips: string[]): string {
  return `for h in ${ips.join(' ')}; do
  n=0
  until ssh -o ConnectTimeout=3 -o BatchMode=yes "$h" true; do
    n=$((n + 1)); [ $n -le 120 ] || { echo "${prefix} error: $h never answered ssh"; exit 1; }
    sleep 1
  done
done
`;
}

/**
 * The script the guest's vc-init runs; its output goes to the console, which
 * follows the VM across migrations.
 *
 * mpi: mpirun the stencil over TCP on the lab network, one rank per VM. Each
 * iteration swaps halos with one neighbour, then the other (each swap waits for
 * the link's delay when that neighbour is on the other site), and every 10th
 * reduces the residual over all ranks.
 *
 * web: start Redis and the application tier on their VMs over ssh, fill
 * Redis, start the web tier here, then the load generator (vcweb.py).
 */
function workloadScript(lab: LabState, vm: VmSpec, w: Workload): string {
  const ipOf = (name: string) => lab.vms[name]!.ip;
  if (w.kind === 'web') {
    const [app, db] = w.tiers.map(ipOf) as [string, string];
    return `# web: the web tier and the load generator here, the application on ${w.tiers[0]}, Redis on ${w.tiers[1]}
${waitForSsh('VCWEB', [app, db])}ssh ${db} 'redis-server --bind 0.0.0.0 --protected-mode no --save "" --appendonly no --dir /tmp --daemonize yes' >/dev/null ||
  { echo "VCWEB error: redis-server did not start on ${w.tiers[1]}"; exit 1; }
ssh ${app} 'setsid vcweb app --db ${db} </dev/null >/tmp/vcweb-app.log 2>&1 &' || { echo "VCWEB error: the application did not start on ${w.tiers[0]}"; exit 1; }
setsid vcweb web --app ${app} </dev/null >/tmp/vcweb-web.log 2>&1 &
vcweb wait ${db}:6379 ${app}:8081 127.0.0.1:8080 || exit 1
vcweb fill --db ${db} || { echo "VCWEB error: filling Redis on ${w.tiers[1]} failed"; exit 1; }
vcweb load --requests ${w.requests} --clients ${w.clients}
status=$?
echo "VCWEB exit status=$status"
exit $status
`;
  }
  const peers = w.ranks.map(ipOf);
  const subnet = `10.${lab.index}.200.0/24`;
  return `# mpi: rank 0 here, then ${w.ranks.join(', ')}
${waitForSsh('VCMPI', peers)}echo "VCMPI launching ranks=${w.ranks.length + 1}"
mpirun --allow-run-as-root -np ${w.ranks.length + 1} --host ${[vm.ip, ...peers].join(',')} \\
  --mca btl self,tcp --mca btl_tcp_if_include ${subnet} --mca oob_tcp_if_include ${subnet} \\
  --mca plm_rsh_agent ssh \\
  /usr/local/bin/stencil --iters ${w.iters} --halo-bytes ${w.haloBytes} --report 20
status=$?
echo "VCMPI exit status=$status"
exit $status
`;
}

/** The two disks of a Debian guest, for its domain XML. */
export function debianDisksXml(labName: string, vm: VmSpec): string {
  return `    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='${vm.disk === 'local' ? localDisk(labName, vm.name) : sharedDisk(labName, vm.name)}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source file='${configDiskOf(labName, vm.name)}'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
`;
}
