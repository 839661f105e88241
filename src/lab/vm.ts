import { access, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { completedJob, defineDomain, listDomains, migrateDomain, startDomain } from '../libvirt/virsh.js';
import { guestDir } from '../paths.js';
import { UserError } from '../util/errors.js';
import { waitFor } from '../util/exec.js';
import { checkWorkload, createOverlay, debianDisksXml, diskFile, prepareDebianDisks, type Workload } from './debian.js';
import { requireLab } from './lab.js';
import { peersFor } from '../placement/patterns.js';
import { consoleLog, labDir, writeState, type LabState, type VmSpec } from './state.js';
import { MAX_VMS, domainName, findHost, hosts, prefix, vmIp, vmMac, type LabHost } from './topology.js';

const VM_NAME_RE = /^[a-z][a-z0-9]{0,11}$/;
export const GUEST_PORT = 7000;

export interface AddOptions {
  name: string;
  host: string;
  index?: number;
  pattern: string;
  cluster: number;
  rate: number;
  size: number;
  memoryMiB: number;
  /** Wait until the guest prints that it is up. */
  wait: boolean;
  /** ARP announcements the guest sends (tests of the address book): `as:IP:COUNT` or `random:COUNT`. */
  arp?: string;
  /** 'debian': a disk-backed Debian guest instead of the diskless traffic generator. */
  image?: 'debian';
  /** What that Debian guest runs once up. */
  workload?: Workload;
  /** 'local': its root disk on its host's own storage (migrations copy it). */
  disk?: 'local';
  /** 'off': the Debian guest turns segmentation offload off (its counters then count wire frames, as the sensor does). */
  offload?: 'off';
  /** What it is in another VM's job (an MPI rank, a tier), for people. */
  role?: string;
}

export interface AddedVm extends VmSpec {
  host: string;
  /** Seconds from `virsh start` to the guest's "up" line, when waited for. */
  bootSeconds?: number;
}

export async function addVm(labName: string, opts: AddOptions): Promise<AddedVm> {
  const lab = await requireLab(labName);
  if (!VM_NAME_RE.test(opts.name)) {
    throw new UserError(`VM name '${opts.name}' is not valid: use 1 to 12 lowercase letters or digits, starting with a letter (e.g. vm1)`);
  }
  if (lab.vms[opts.name]) throw new UserError(`VM '${opts.name}' already exists in lab '${lab.name}' (see virt-cohort lab vm list)`);
  const host = findHost(lab, opts.host);
  const used = new Set(Object.values(lab.vms).map((v) => v.index));
  const index = opts.index ?? firstFree(used);
  if (!Number.isInteger(index) || index < 1 || index > MAX_VMS) throw new UserError(`--index must be from 1 to ${MAX_VMS} (got ${index})`);
  if (used.has(index)) throw new UserError(`VM index ${index} is taken in lab '${lab.name}': leave --index out to take the next free one`);
  if (!(opts.rate >= 0 && opts.rate <= 10_000)) throw new UserError(`--rate must be from 0 to 10000 datagrams/s per peer (got ${opts.rate})`);
  if (!(opts.size >= 32 && opts.size <= 1400)) throw new UserError(`--size must be from 32 to 1400 bytes (got ${opts.size})`);
  if (!(opts.memoryMiB >= 64 && opts.memoryMiB <= 4096)) throw new UserError(`--memory must be from 64 to 4096 MiB (got ${opts.memoryMiB})`);
  const peers = peersFor(opts.pattern, index, opts.cluster);
  await requireGuestImage();
  if (opts.image === 'debian') {
    if (peers.length) throw new UserError(`a Debian guest sends no synthetic traffic: leave --pattern out and give it a --workload`);
    if (opts.workload) checkWorkload(lab, opts.name, opts.workload);
  } else if (opts.workload || opts.disk || opts.offload) {
    throw new UserError(`${opts.workload ? '--workload' : opts.disk ? '--local-disk' : 'offload off'} needs --image debian: the diskless guest only runs the traffic generator`);
  }

  const spec: VmSpec = {
    name: opts.name,
    index,
    ip: vmIp(lab, index),
    mac: vmMac(lab, index),
    memoryMiB: opts.memoryMiB,
    pattern: opts.pattern,
    cluster: opts.cluster,
    peers,
    rate: opts.rate,
    size: opts.size,
    ...(opts.arp ? { arp: checkArp(opts.arp) } : {}),
    ...(opts.image ? { image: opts.image } : {}),
    ...(opts.workload ? { workload: opts.workload } : {}),
    ...(opts.disk ? { disk: opts.disk } : {}),
    ...(opts.offload ? { offload: opts.offload } : {}),
    ...(opts.role ? { role: opts.role } : {}),
  };
  if (spec.image === 'debian') await prepareDebianDisks(lab, spec, host.name);
  const dir = join(labDir(lab.name), 'vms');
  await mkdir(dir, { recursive: true });
  const xmlFile = join(dir, `${opts.name}.xml`);
  await writeFile(xmlFile, domainXml(lab, spec));
  const log = consoleLog(lab.name, opts.name);
  const offset = await sizeOf(log);
  await defineDomain(host.uri, xmlFile);
  lab.vms[opts.name] = spec;
  await writeState(lab);
  const started = Date.now();
  await startDomain(host.uri, domainName(lab, opts.name));
  const added: AddedVm = { ...spec, host: host.name };
  if (opts.wait) {
    await waitFor(
      `guest ${opts.name} to boot (console: ${log})`,
      async () => {
        const text = await consoleSince(log, offset);
        const failed = /VCGUEST error: .*/.exec(text);
        if (failed) throw new Error(`guest ${opts.name} failed to start its traffic generator: ${failed[0]} (console: ${log})`);
        return text.includes('VCGUEST up') ? true : undefined;
      },
      120_000,
      200,
    );
    added.bootSeconds = (Date.now() - started) / 1000;
  }
  return added;
}

function firstFree(used: Set<number>): number {
  for (let i = 1; i <= MAX_VMS; i++) if (!used.has(i)) return i;
  throw new UserError(`the lab holds at most ${MAX_VMS} VMs`);
}

async function requireGuestImage(): Promise<void> {
  try {
    await access(join(guestDir, 'vmlinuz'));
    await access(join(guestDir, 'initrd.img'));
  } catch {
    throw new UserError(`the lab's guest image is missing from ${guestDir}: run 'npm run setup' as root; it builds it`);
  }
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

export async function consoleSince(file: string, offset: number): Promise<string> {
  try {
    return (await readFile(file)).subarray(offset).toString('utf8');
  } catch {
    return '';
  }
}

const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;');

/**
 * A guest booted straight from the lab's kernel and initramfs: diskless, its
 * traffic pattern on the kernel command line, or (image debian) with its root
 * on a qcow2 overlay that the initramfs mounts. The console goes to one file
 * shared by every host, so it follows the VM across migrations.
 */
export function domainXml(lab: LabState, vm: VmSpec): string {
  const peerIps = vm.peers.map((p) => `10.${lab.index}.200.${p}`).join(',');
  const cmdline = [
    'console=ttyS0',
    'quiet',
    'panic=-1',
    // The guest's time from the emulated HPET (found through ACPI, hence <acpi/> below), which QEMU derives from the
    // host's clock. Without it the kernel has the TSC, calibrated at boot and a few percent wrong when the host is
    // busy then, or jiffies, which fall behind when timer ticks are lost: a guest then sends its `rate` per second
    // a few percent slow (a CI run saw one guest send 96 of every 100 for a whole suite).
    'clocksource=hpet',
    `vc.name=${vm.name}`,
    `vc.ip=${vm.ip}/24`,
    `vc.rate=${vm.rate}`,
    `vc.size=${vm.size}`,
    `vc.port=${GUEST_PORT}`,
    ...(peerIps ? [`vc.peers=${peerIps}`] : []),
    ...(vm.arp ? [`vc.arp=${vm.arp}`] : []),
    ...(vm.image === 'debian' ? ['vc.root=/dev/vda'] : []),
    ...(vm.offload ? [`vc.offload=${vm.offload}`] : []),
  ].join(' ');
  return `<domain type='qemu'>
  <name>${domainName(lab, vm.name)}</name>
  <metadata>
    <vc:lab xmlns:vc="https://virt-cohort.dev/xmlns/lab/1">
      <vc:name>${escapeXml(lab.name)}</vc:name>
      <vc:vm index="${vm.index}" pattern="${escapeXml(vm.pattern)}" cluster="${vm.cluster}" rate="${vm.rate}" size="${vm.size}"/>
    </vc:lab>
  </metadata>
  <memory unit='MiB'>${vm.memoryMiB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${join(guestDir, 'vmlinuz')}</kernel>
    <initrd>${join(guestDir, 'initrd.img')}</initrd>
    <cmdline>${escapeXml(cmdline)}</cmdline>
  </os>
  <features>
    <acpi/>
  </features>
  <clock offset='utc'>
    <timer name='hpet' present='yes'/>
  </clock>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
${vm.image === 'debian' ? debianDisksXml(lab.name, vm) : ''}    <interface type='bridge'>
      <source bridge='vmbr'/>
      <mac address='${vm.mac}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='${consoleLog(lab.name, vm.name)}' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}

export interface VmPlace {
  name: string;
  domain: string;
  host: string;
  state: string;
  spec?: VmSpec;
}

/** Where each of the lab's domains is, asked of every host's libvirt (a VM mid-migration shows on two hosts). */
export async function listVms(lab: LabState): Promise<VmPlace[]> {
  const p = `${prefix(lab.name)}-`;
  const perHost = await Promise.all(hosts(lab).map(async (h) => (await listDomains(h.uri)).filter((d) => d.name.startsWith(p)).map((d) => ({ d, h }))));
  return perHost
    .flat()
    .map(({ d, h }) => {
      const name = d.name.slice(p.length);
      return { name, domain: d.name, host: h.name, state: d.state, spec: lab.vms[name] };
    })
    .sort((a, b) => (a.spec?.index ?? 999) - (b.spec?.index ?? 999) || a.name.localeCompare(b.name) || a.host.localeCompare(b.host));
}

export async function locateVm(lab: LabState, vm: string): Promise<LabHost> {
  if (!lab.vms[vm]) {
    throw new UserError(`no VM '${vm}' in lab '${lab.name}': its VMs are ${Object.keys(lab.vms).join(', ') || 'none yet (add one with virt-cohort lab vm add)'}`);
  }
  const running = (await listVms(lab)).filter((v) => v.name === vm && v.state === 'running');
  if (running.length !== 1) {
    throw new UserError(`VM '${vm}' is not running on exactly one host (found ${running.length}): see virt-cohort lab vm list`);
  }
  return findHost(lab, running[0]!.host);
}

export interface Migration {
  vm: string;
  from: string;
  to: string;
  seconds: number;
  downtimeMs?: number;
  dataMiB?: number;
}

/** Live-migrates a lab VM (`live` false: paused for the whole copy); its memory stream crosses the data network (and the shaped inter-site link). */
export async function migrateVm(labName: string, vm: string, to: string, live = true): Promise<Migration> {
  const lab = await requireLab(labName);
  const dest = findHost(lab, to);
  const src = await locateVm(lab, vm);
  if (src.name === dest.name) throw new UserError(`VM '${vm}' already runs on ${dest.name}`);
  const dom = domainName(lab, vm);
  const started = Date.now();
  // Memory crossing sites goes over TLS, as the manager's default (manager.encrypt between-sites) sends it.
  const spec = lab.vms[vm]!;
  // A local disk is copied into a fresh overlay on the destination; a shared one is in the lab's storage
  // directory, which every host sees but libvirt cannot tell is shared.
  const local = spec.image === 'debian' && spec.disk === 'local';
  if (local) await createOverlay(diskFile(lab.name, spec, dest.name));
  try {
    await migrateDomain(src.uri, dom, dest.uri, {
      migrateUri: `tcp://${dest.dataIp}`,
      live,
      tls: src.site !== dest.site,
      ...(local ? { copyStorage: true } : { unsafe: spec.image === 'debian' }),
    });
  } catch (err) {
    if (local) await rm(diskFile(lab.name, spec, dest.name), { force: true });
    throw err;
  }
  if (local) await rm(diskFile(lab.name, spec, src.name), { force: true });
  const result: Migration = { vm, from: src.name, to: dest.name, seconds: (Date.now() - started) / 1000 };
  const job = await completedJob(dest.uri, dom).catch(() => ({}) as Record<string, string>);
  const downtime = /^(\d+)/.exec(job['Total downtime'] ?? '');
  if (downtime) result.downtimeMs = Number(downtime[1]);
  const data = /^([\d.]+) MiB/.exec(job['Data processed'] ?? job['Memory processed'] ?? '');
  if (data) result.dataMiB = Number(data[1]);
  return result;
}

/** `as:IP:COUNT` or `random:COUNT` (see src/lab/guest/vcarp.c). */
function checkArp(arp: string): string {
  if (/^as:\d{1,3}(\.\d{1,3}){3}:\d{1,4}$|^random:\d{1,6}$/.test(arp)) return arp;
  throw new UserError(`ARP announcements must be as:IP:COUNT or random:COUNT (got '${arp}')`);
}
