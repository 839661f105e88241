import { constants } from 'node:fs';
import { access, readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { RedisAuth } from '../config/schema.js';
import { LibvirtClient, type DomainSnapshot } from '../libvirt/client.js';
import type { RoutePolicy } from '../manager/trust.js';
import { bpfObject, packageRoot } from '../paths.js';
import { ourHooks, showTaps } from '../sensor/tc.js';
import { CommandError } from '../util/errors.js';
import { run, withTimeout } from '../util/exec.js';
import { libvirtDaemon } from './proc.js';

export type Status = 'ok' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  id: string;
  title: string;
  status: Status;
  detail: string;
  /** What to type, when the status is not ok. */
  fix?: string;
}

/** What the checks look at: the effective configuration and the doctor's own options. */
export interface DoctorContext {
  libvirtUri: string;
  /** agent.advertiseUri ('' or absent: libvirtUri is registered). */
  advertiseUri?: string;
  hooksDir: string;
  pinRoot: string;
  socket: string;
  stateDir: string;
  spoolMax: number;
  periodSeconds: number;
  redisUrl: string;
  redisAuth?: RedisAuth;
  sensor: 'auto' | 'ebpf' | 'pcap';
  /** This host's name in the registry (agent.host): whose sensor backend to show. */
  host: string;
  isRoot: boolean;
  /** Check each registered host's routes against these (the manager's): `doctor --manager`, or a configured policy. */
  routes?: RoutePolicy;
}

/** Shared between checks: the domains libvirt listed, for the taps check. */
export interface Findings {
  domains?: DomainSnapshot[];
}

export const res = (id: string, title: string, status: Status, detail: string, fix?: string): CheckResult => ({ id, title, status, detail, ...(fix && status !== 'ok' ? { fix } : {}) });
const missing = (err: unknown) => err instanceof CommandError && err.code === 'ENOENT';

export async function checkRoot(c: DoctorContext): Promise<CheckResult> {
  return c.isRoot
    ? res('root', 'privileges', 'ok', 'running as root: every check can look')
    : res('root', 'privileges', 'warn', 'not root: the BPF, tc and pin checks cannot look everywhere', 'sudo virt-cohort doctor');
}

export async function checkBpf(c: DoctorContext): Promise<CheckResult> {
  const id = 'bpf';
  const title = 'kernel BPF';
  const object = await access(bpfObject, constants.R_OK).then(
    () => true,
    () => false,
  );
  if (!object) return res(id, title, 'fail', `our BPF object ${bpfObject} is missing`, 'reinstall the package (apt install --reinstall virt-cohort), or in a checkout: npm run setup');
  let probe: { syscall_config?: Record<string, boolean>; program_types?: Record<string, boolean>; map_types?: Record<string, boolean> };
  try {
    probe = JSON.parse(await run('bpftool', ['-j', 'feature', 'probe', 'kernel'], { timeoutMs: 20_000 }));
  } catch (err) {
    if (missing(err))
      return res(id, title, 'warn', 'bpftool is not installed: the kernel cannot be probed (the agent says at start whether it loads)', 'apt install bpftool (or linux-tools-$(uname -r))');
    return res(
      id,
      title,
      c.isRoot ? 'fail' : 'skip',
      `bpftool feature probe failed: ${(err as Error).message.split('\n').pop()}`,
      c.isRoot ? 'check dmesg; a kernel with CONFIG_BPF_SYSCALL is needed, else use agent.sensor: pcap' : 'sudo virt-cohort doctor',
    );
  }
  const need: [string, boolean | undefined][] = [
    ['bpf() system call', probe.syscall_config?.have_bpf_syscall],
    ['sched_cls programs (tc)', probe.program_types?.have_sched_cls_prog_type],
    ['hash maps', probe.map_types?.have_hash_map_type],
    ['array maps', probe.map_types?.have_array_map_type],
    ['array-of-maps', probe.map_types?.have_array_of_maps_map_type],
    // vc_cache, each CPU's last flow: in the shared-maps fallback too.
    ['per-CPU array maps', probe.map_types?.have_percpu_array_map_type],
  ];
  const lacking = need.filter(([, ok]) => !ok).map(([n]) => n);
  if (lacking.length) {
    return res(
      id,
      title,
      'fail',
      `this kernel lacks ${lacking.join(', ')}${c.isRoot ? '' : ' (or, not root, bpftool could not see them)'}`,
      c.isRoot ? 'run a kernel with CONFIG_BPF_SYSCALL and CONFIG_NET_CLS_BPF (5.4 or later), or set agent.sensor: pcap' : 'sudo virt-cohort doctor',
    );
  }
  return res(id, title, 'ok', `bpf() syscall, tc programs and the map types the sensor uses are available; object ${bpfObject}`);
}

export async function checkBpffs(c: DoctorContext): Promise<CheckResult> {
  const mounts = (await readFile('/proc/mounts', 'utf8').catch(() => ''))
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[2] === 'bpf')
    .map((f) => f[1]!);
  const pinRoot = resolve(c.pinRoot);
  const holding = mounts.filter((m) => pinRoot === m || pinRoot.startsWith(m.endsWith('/') ? m : `${m}/`)).sort((a, b) => b.length - a.length)[0];
  if (!mounts.includes('/sys/fs/bpf')) {
    return res(
      'bpffs',
      'bpffs',
      'fail',
      'no BPF filesystem at /sys/fs/bpf: the sensor cannot pin its maps, and counts are lost at each agent restart',
      "mount -t bpf bpf /sys/fs/bpf   (made permanent by systemd's sys-fs-bpf.mount)",
    );
  }
  if (!holding)
    return res(
      'bpffs',
      'bpffs',
      'fail',
      `the pin root ${pinRoot} is not on a bpf filesystem (mounted at: ${mounts.join(', ')})`,
      'set agent.pinRoot under /sys/fs/bpf (default /sys/fs/bpf/virt-cohort)',
    );
  return res('bpffs', 'bpffs', 'ok', `mounted at ${holding}, which holds the pin root ${pinRoot}`);
}

export async function checkPins(c: DoctorContext): Promise<CheckResult> {
  const entries = await readdir(c.pinRoot).catch(() => undefined);
  if (entries?.length) return res('pins', 'sensor pins', 'ok', `${entries.length} maps and programs pinned at ${c.pinRoot}`);
  if (c.sensor === 'pcap') return res('pins', 'sensor pins', 'skip', 'the agent is set to the pcap backend: nothing to pin');
  return res(
    'pins',
    'sensor pins',
    'warn',
    `nothing pinned at ${c.pinRoot}: the agent has not loaded its eBPF sensor here (not running, or fell back to pcap)`,
    'systemctl status virt-cohort-agent; journalctl -u virt-cohort-agent -e',
  );
}

export async function checkClsact(c: DoctorContext): Promise<CheckResult> {
  if (!c.isRoot) return res('clsact', 'tc clsact', 'skip', 'needs root (it adds a clsact qdisc in a throw-away network namespace)', 'sudo virt-cohort doctor');
  try {
    // A private network namespace: nothing of the host's is touched.
    await run('unshare', ['--net', 'tc', 'qdisc', 'add', 'dev', 'lo', 'clsact'], { timeoutMs: 10_000 });
    return res('clsact', 'tc clsact', 'ok', 'the clsact qdisc can be added (tested in a throw-away network namespace)');
  } catch (err) {
    if (missing(err)) return res('clsact', 'tc clsact', 'fail', '`tc` or `unshare` is not installed', 'apt install iproute2 util-linux');
    const m = (err as Error).message;
    if (/kind is unknown|not supported|Unknown qdisc/i.test(m)) {
      return res(
        'clsact',
        'tc clsact',
        'fail',
        'this kernel has no clsact qdisc (CONFIG_NET_SCH_INGRESS): no tc program can watch a tap',
        'modprobe sch_ingress; if absent, run a kernel with CONFIG_NET_SCH_INGRESS or set agent.sensor: pcap',
      );
    }
    return res('clsact', 'tc clsact', 'fail', `adding a clsact qdisc failed: ${m.split('\n').pop()}`, 'modprobe sch_ingress, and check that tc (iproute2) works');
  }
}

export async function checkLibvirt(c: DoctorContext, f: Findings): Promise<CheckResult> {
  const id = 'libvirt';
  const title = 'libvirt';
  let client: LibvirtClient;
  try {
    client = await withTimeout(LibvirtClient.connect(c.libvirtUri), 10_000, `libvirt at ${c.libvirtUri}`);
  } catch (err) {
    const m = (err as Error).message;
    const why = /^cannot connect to libvirt at \S+ \((.*)\): is libvirtd/s.exec(m)?.[1] ?? m;
    return res(
      id,
      title,
      'fail',
      `cannot reach libvirt at ${c.libvirtUri} (${why})`,
      `systemctl start libvirtd (or: systemctl start virtqemud.socket); if libvirt runs elsewhere, set agent.libvirtUri / --libvirt-uri (now ${c.libvirtUri}); is libvirt installed here? (apt install libvirt-daemon-system)`,
    );
  }
  try {
    f.domains = await withTimeout(client.domains(), 15_000, 'listing the domains');
  } catch (err) {
    return res(id, title, 'fail', `libvirt at ${c.libvirtUri} answers but cannot list its domains: ${(err as Error).message}`, 'journalctl -u libvirtd -e');
  } finally {
    await client.close();
  }
  const version = await run('virsh', ['-c', c.libvirtUri, 'version', '--daemon'], { timeoutMs: 10_000 }).then(
    (out) => {
      const daemon = /Running against daemon:\s*(\S+)/.exec(out)?.[1];
      const hv = /Running hypervisor:\s*(.+)/.exec(out)?.[1]?.trim();
      return [daemon ? `libvirt ${daemon}` : '', hv ?? ''].filter(Boolean).join(', ');
    },
    () => '',
  );
  return res(id, title, 'ok', `${version || 'libvirt'} at ${c.libvirtUri}; ${f.domains.length} active domain(s)`);
}

export async function checkTaps(c: DoctorContext, f: Findings): Promise<CheckResult> {
  const id = 'taps';
  const title = 'filters on VM taps';
  if (!f.domains) return res(id, title, 'skip', 'libvirt is not reachable: the taps are unknown');
  if (!c.isRoot) return res(id, title, 'skip', 'needs root to read tc filters', 'sudo virt-cohort doctor');
  const taps: { vm: string; tap: string }[] = [];
  const optedOut: string[] = [];
  for (const d of f.domains) {
    if (d.optOut) {
      optedOut.push(d.name);
      continue;
    }
    for (const i of d.interfaces) if (i.tap) taps.push({ vm: d.name, tap: i.tap });
  }
  const note = optedOut.length ? `; opted out (not watched): ${optedOut.join(', ')}` : '';
  if (!taps.length) return res(id, title, 'ok', `no VM tap to watch${note}`);
  if (c.sensor === 'pcap') return res(id, title, 'skip', `${taps.length} taps; the agent is set to the pcap backend, which uses no tc filter${note}`);
  const without: string[] = [];
  const states = await showTaps(taps.map((t) => t.tap));
  for (const t of taps) {
    const hooks = new Set(ourHooks(states.get(t.tap)!));
    if (!hooks.has('ingress') || !hooks.has('egress')) without.push(`${t.tap} (${t.vm}${hooks.size ? `, only ${[...hooks].join('')}` : ''})`);
  }
  if (without.length) {
    return res(
      id,
      title,
      'fail',
      `${without.length} of ${taps.length} VM taps are not counted: ${without.join(', ')}${note}`,
      'the agent attaches new taps within agent.reconcileSeconds; if they stay uncounted: systemctl restart virt-cohort-agent; journalctl -u virt-cohort-agent -e',
    );
  }
  return res(id, title, 'ok', `our filters on both directions of all ${taps.length} VM taps${note}`);
}

export async function checkHook(c: DoctorContext): Promise<CheckResult> {
  const target = join(c.hooksDir, 'qemu.d', 'virt-cohort');
  const install = `virt-cohort install-hook --hooks-dir ${c.hooksDir} --socket ${c.socket}, then restart libvirtd (or virtqemud) once`;
  const st = await stat(target).catch(() => undefined);
  if (!st) return res('hook', 'libvirt hook installed', 'fail', `${target} is missing: VM starts, stops and migrations reach the agent only at its next reconcile`, install);
  if (!(st.mode & 0o111)) return res('hook', 'libvirt hook installed', 'fail', `${target} is not executable: libvirt skips it`, `chmod 755 ${target}`);
  const [ours, theirs] = await Promise.all([readFile(join(packageRoot, 'hooks', 'qemu'), 'utf8').catch(() => ''), readFile(target, 'utf8')]);
  if (ours && ours !== theirs) return res('hook', 'libvirt hook installed', 'fail', `${target} differs from this version's hook (${join(packageRoot, 'hooks', 'qemu')})`, install);
  const socketFile = join(c.hooksDir, 'virt-cohort.socket');
  const told = (await readFile(socketFile, 'utf8').catch(() => '')).trim() || '/run/virt-cohort/agent.sock';
  if (told !== c.socket) return res('hook', 'libvirt hook installed', 'fail', `the hook writes to ${told} but the agent listens on ${c.socket}`, install);
  return res('hook', 'libvirt hook installed', 'ok', `${target}, executable, this version's, writing to ${c.socket}`);
}

export async function checkHookLoaded(c: DoctorContext): Promise<CheckResult> {
  const id = 'hook-loaded';
  const title = 'libvirt hook loaded';
  const target = join(c.hooksDir, 'qemu.d', 'virt-cohort');
  const st = await stat(target).catch(() => undefined);
  if (!st) return res(id, title, 'skip', 'the hook is not installed');
  // A lab keeps its libvirtd's pid file beside its hooks (HOST/etc/libvirt/hooks → HOST/libvirtd.pid).
  const pidFiles = [join(c.hooksDir, '..', '..', '..', 'libvirtd.pid'), '/run/libvirtd.pid', '/run/libvirt/virtqemud.pid', '/var/run/libvirtd.pid'];
  const d = await libvirtDaemon(pidFiles);
  if (!d) return res(id, title, 'skip', 'no libvirtd or virtqemud runs now: it reads the hook when it starts');
  const started = new Date(d.startedAt).toISOString();
  if (d.startedAt < st.mtimeMs) {
    return res(
      id,
      title,
      'fail',
      `${d.name} (pid ${d.pid}) started at ${started}, before the hook changed (${new Date(st.mtimeMs).toISOString()}): it has not loaded it`,
      `systemctl restart ${d.name} (running VMs keep running)`,
    );
  }
  return res(id, title, 'ok', `${d.name} (pid ${d.pid}) started at ${started}, after the hook was installed`);
}

export async function checkAgentSocket(c: DoctorContext): Promise<CheckResult> {
  const st = await stat(c.socket).catch(() => undefined);
  if (!st) return res('agent', 'agent socket', 'warn', `no socket at ${c.socket}: the agent is not running on this host`, 'systemctl start virt-cohort-agent; journalctl -u virt-cohort-agent -e');
  if (!st.isSocket()) return res('agent', 'agent socket', 'fail', `${c.socket} is not a socket`, `remove it (rm ${c.socket}) and restart the agent`);
  if (st.mode & 0o077 || st.uid !== 0)
    return res(
      'agent',
      'agent socket',
      'warn',
      `${c.socket} is open to others (mode ${(st.mode & 0o777).toString(8)}, owner ${st.uid}): any local user could send it hook events`,
      `chmod 600 ${c.socket}; run the agent as root`,
    );
  return res('agent', 'agent socket', 'ok', `${c.socket}, root only`);
}

export async function checkSpool(c: DoctorContext): Promise<CheckResult> {
  const dir = join(c.stateDir, 'spool');
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
  if (!names) return res('spool', 'spool', 'ok', `no spool at ${dir} (the agent has not run here yet)`);
  const waiting = names.filter((n) => n.endsWith('.json') && !n.startsWith('.'));
  const bad = names.filter((n) => n.endsWith('.bad'));
  let bytes = 0;
  for (const n of waiting) bytes += (await stat(join(dir, n)).catch(() => ({ size: 0 }))).size;
  const detail = `${waiting.length} report(s) waiting for Redis in ${dir} (${(bytes / 1024).toFixed(0)} KiB; at most ${c.spoolMax})${bad.length ? `; ${bad.length} unreadable set aside (.bad)` : ''}`;
  if (waiting.length >= c.spoolMax * 0.9)
    return res(
      'spool',
      'spool',
      'fail',
      `${detail}: nearly full, the oldest reports are being dropped`,
      'make Redis reachable from this host (see the redis check); raise agent.spoolMax to keep more meanwhile',
    );
  if (waiting.length >= 3)
    return res(
      'spool',
      'spool',
      'warn',
      `${detail}: the agent cannot write to Redis`,
      'make Redis reachable from this host (see the redis check); the agent sends them on reconnecting; journalctl -u virt-cohort-agent -e',
    );
  if (bad.length) return res('spool', 'spool', 'warn', detail, `look at ${dir}/*.bad, then delete them`);
  return res('spool', 'spool', 'ok', detail);
}
