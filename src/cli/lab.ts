import { Command } from 'commander';
import { DEFAULT_PERIOD_SECONDS } from '../util/period.js';
import { labDown, labUp } from '../lab/lab.js';
import { labStatus, type LabStatus } from '../lab/status.js';
import { addVm, listVms, migrateVm } from '../lab/vm.js';
import { ensureDebianImage, type Workload } from '../lab/debian.js';
import { UserError } from '../util/errors.js';
import { requireLab } from '../lab/lab.js';
import { hosts, spreadHost } from '../lab/topology.js';
import { labEnvironment } from '../lab/environment.js';
import type { LabState } from '../lab/state.js';
import { defaultLab, integer, labSensorOption, number, printJson } from './options.js';
import { table } from './table.js';

interface VmTraffic {
  pattern: string;
  vmRate: number;
  vmSize: number;
  memory: number;
}

export function labCommand(): Command {
  const lab = new Command('lab').description('a real multi-site libvirt cluster on this machine, for the demo and the tests');
  const nameOpt = ['--name <name>', 'lab name (prefixes every namespace, link, port and VM)', defaultLab()] as const;

  lab
    .command('up')
    .description('create the lab: sites of hosts, each a network namespace running its own libvirtd, joined by shaped links and a VXLAN VM network')
    .option(...nameOpt)
    .option('--sites <n>', 'number of sites', integer, 2)
    .option('--hosts-per-site <n>', 'hosts in each site', integer, 2)
    .option('--delay <ms>', 'one-way delay between two sites, ms', number, 20)
    .option('--rate <mbit>', 'bandwidth between sites, Mbit/s (below 1000, live migration of TCG guests is unsafe here: see docs/measurements.md)', number, 1000)
    .option('--vms <n>', 'guests to start, spread over the sites in turn', integer, 0)
    .option('--pattern <p>', 'traffic pattern of those guests: idle, pairs, ring, groups:K, all', 'groups:2')
    .option('--vm-rate <n>', 'datagrams per second each guest sends to each peer', integer, 20)
    .option('--vm-size <bytes>', 'UDP payload size of those datagrams', integer, 256)
    .option('--memory <MiB>', 'memory of each guest', integer, 128)
    .option('--index <L>', 'use 10.L.0.0/16 for the lab (default: the first free from 101)', integer)
    .option('--redis-port <port>', "port of the lab's Redis (default 16300 + L)", integer)
    .option('--period <s>', "period of the lab hosts' agents, seconds (divides an hour)", integer, DEFAULT_PERIOD_SECONDS)
    .option('--no-agents', 'do not start an agent on each lab host')
    .addOption(labSensorOption())
    .option('--json', 'print the resulting status as JSON')
    .action(async (o) => {
      const state = await labUp({
        periodSeconds: o.period,
        agents: o.agents,
        sensor: o.sensor,
        name: o.name,
        sites: o.sites,
        hostsPerSite: o.hostsPerSite,
        delayMs: o.delay,
        rateMbit: o.rate,
        ...(o.index !== undefined ? { index: o.index } : {}),
        ...(o.redisPort !== undefined ? { redisPort: o.redisPort } : {}),
      });
      if (!o.json) process.stdout.write(`lab '${state.name}' is up: ${hosts(state).length} hosts in ${state.sites} sites, in ${state.upSeconds?.toFixed(1)} s\n`);
      await startGuests(state, o.vms, { pattern: o.pattern, vmRate: o.vmRate, vmSize: o.vmSize, memory: o.memory }, !o.json);
      const status = await labStatus(state.name);
      if (o.json) printJson(status);
      else process.stdout.write(`next: virt-cohort lab status${state.name === defaultLab() ? '' : ` --name ${state.name}`}\n`);
    });

  lab
    .command('status')
    .description('hosts, links, Redis and VMs of the lab, checked live')
    .option(...nameOpt)
    .option('--json', 'print as JSON')
    .action(async (o) => {
      const status = await labStatus(o.name);
      if (o.json) printJson(status);
      else process.stdout.write(formatStatus(status));
    });

  lab
    .command('down')
    .description('remove everything the lab created (also after a crashed lab up): processes by pid, namespaces, links, pins, state')
    .option(...nameOpt)
    .action(async (o) => {
      const removed = await labDown(o.name);
      process.stdout.write(
        removed.length ? `lab '${o.name}' removed: ${removed.length} items (${removed.slice(0, 6).join(', ')}${removed.length > 6 ? ', ...' : ''})\n` : `lab '${o.name}': nothing to remove\n`,
      );
    });

  lab
    .command('env')
    .description('the environment file of the lab (sites, hosts, links with its delay and rate), for virt-cohort plan/groups/place --env')
    .option(...nameOpt)
    .action(async (o) => printJson(labEnvironment(await requireLab(o.name))));

  lab.addCommand(vmCommand(nameOpt));
  return lab;
}

function vmCommand(nameOpt: readonly [string, string, string]): Command {
  const vm = new Command('vm').description("the lab's guests: define, list, live-migrate");
  vm.command('add <vm>')
    .description('define a persistent guest on a lab host and start it')
    .option(...nameOpt)
    .requiredOption('--host <host>', 'lab host to run it on (e.g. a1)')
    .option('--index <i>', 'its index in the virtual cluster; its IP is 10.L.200.i (default: the next free)', integer)
    .option('--pattern <p>', 'traffic pattern: idle, pairs, ring, groups:K, all, peers:I,J', 'idle')
    .option('--cluster <n>', 'size of the virtual cluster the pattern spans', integer, 4)
    .option('--rate <n>', 'datagrams per second to each peer', integer, 20)
    .option('--size <bytes>', 'UDP payload bytes', integer, 256)
    .option('--memory <MiB>', 'guest memory (default: 128, or 256 with --image debian)', integer)
    .option('--image <image>', "'debian': a disk-backed Debian 12 guest with sshd and OpenMPI (built on first use) instead of the diskless traffic generator")
    .option(
      '--workload <kind>',
      "what the Debian guest runs once up: 'mpi' launches a stencil job on itself and --ranks, one process each; 'web' runs the web tier and a load generator here, the application and Redis on --tiers",
    )
    .option('--ranks <vms>', 'with --workload mpi: the other lab VMs of the job, comma separated, added before with --image debian')
    .option('--iters <n>', 'with --workload mpi: stencil iterations; the job verifies its result at the end', integer, 2000)
    .option('--halo-bytes <n>', 'with --workload mpi: bytes each rank sends each neighbour per iteration', integer, 4096)
    .option('--tiers <app,db>', 'with --workload web: the lab VMs that run the application and Redis, added before with --image debian')
    .option('--requests <n>', 'with --workload web: requests the load generator sends; it checks every answer', integer, 3000)
    .option('--clients <n>', 'with --workload web: requests in flight at once', integer, 2)
    .option('--local-disk', "with --image debian: its root disk on its host's own storage instead of the lab's shared storage; migrations copy it (--copy-storage-all)")
    .option('--no-wait', 'return once started, without waiting for the guest to boot')
    .action(async (name: string, o) => {
      const image = imageOption(o.image);
      if (image === 'debian') await ensureDebianImage((line) => process.stdout.write(`${line}\n`));
      const added = await addVm(o.name, {
        name,
        host: o.host,
        pattern: o.pattern,
        cluster: o.cluster,
        rate: o.rate,
        size: o.size,
        memoryMiB: o.memory ?? (image === 'debian' ? 256 : 128),
        wait: o.wait,
        ...(o.index !== undefined ? { index: o.index } : {}),
        ...(image ? { image } : {}),
        ...(o.workload ? { workload: workloadOption(o) } : {}),
        ...(o.localDisk ? { disk: 'local' as const } : {}),
      });
      process.stdout.write(describeAdded(added));
    });

  vm.command('list')
    .description("where each of the lab's guests runs, asked of every host's libvirt")
    .option(...nameOpt)
    .option('--json', 'print as JSON')
    .action(async (o) => {
      const vms = await listVms(await requireLab(o.name));
      if (o.json) printJson(vms);
      else process.stdout.write(`${formatVms(vms)}\n`);
    });

  vm.command('migrate <vm> <host>')
    .description('live-migrate a guest to another lab host (peer to peer, memory over the data network)')
    .option(...nameOpt)
    .option('--json', 'print as JSON')
    .action(async (name: string, host: string, o) => {
      const m = await migrateVm(o.name, name, host);
      if (o.json) printJson(m);
      else
        process.stdout.write(
          `${m.vm}: ${m.from} -> ${m.to} in ${m.seconds.toFixed(2)} s` +
            `${m.downtimeMs !== undefined ? `, downtime ${m.downtimeMs} ms` : ''}${m.dataMiB !== undefined ? `, ${m.dataMiB} MiB sent` : ''}\n`,
        );
    });
  return vm;
}

function imageOption(image: string | undefined): 'debian' | undefined {
  if (image === undefined) return undefined;
  if (image === 'debian') return image;
  throw new UserError(`--image must be debian (got '${image}'); leave it out for the diskless traffic generator`);
}

function workloadOption(o: { workload: string; ranks?: string; iters: number; haloBytes: number; tiers?: string; requests: number; clients: number }): Workload {
  const list = (s?: string) => (s ?? '').split(',').filter(Boolean);
  if (o.workload === 'mpi') return { kind: 'mpi', ranks: list(o.ranks), iters: o.iters, haloBytes: o.haloBytes };
  if (o.workload === 'web') return { kind: 'web', tiers: list(o.tiers), requests: o.requests, clients: o.clients };
  throw new UserError(`--workload must be mpi or web (got '${o.workload}')`);
}

/** Starts `count` guests spread over the sites in turn (vm1 on site a, vm2 on site b, ...). */
export async function startGuests(state: LabState, count: number, t: VmTraffic, verbose: boolean): Promise<void> {
  for (let i = 1; i <= count; i++) {
    const host = spreadHost(state, i);
    const added = await addVm(state.name, {
      name: `vm${i}`,
      host: host.name,
      index: i,
      pattern: t.pattern,
      cluster: count,
      rate: t.vmRate,
      size: t.vmSize,
      memoryMiB: t.memory,
      wait: true,
    });
    if (verbose) process.stdout.write(describeAdded(added));
  }
}

export function describeAdded(v: Awaited<ReturnType<typeof addVm>>): string {
  const peers = v.workload
    ? v.workload.kind === 'mpi'
      ? `Debian, runs an MPI job on itself and ${v.workload.ranks.join(', ')} (${v.workload.iters} iterations; its console shows the VCMPI lines)`
      : `Debian, the web tier and a load generator; the application on ${v.workload.tiers[0]}, Redis on ${v.workload.tiers[1]} (${v.workload.requests} requests; its console shows the VCWEB lines)`
    : v.image === 'debian'
      ? `Debian, ${v.role ?? 'no workload'}`
      : v.peers.length
        ? `sends ${v.rate}/s x ${v.size} B to vm index ${v.peers.join(',')}`
        : 'idle';
  return `${v.name} (${v.ip}) on ${v.host}: ${peers}${v.bootSeconds !== undefined ? `; booted in ${v.bootSeconds.toFixed(1)} s` : ''}\n`;
}

function formatVms(vms: Awaited<ReturnType<typeof listVms>>): string {
  if (!vms.length) return 'no VMs (add one with: virt-cohort lab vm add vm1 --host a1)';
  return table(
    ['VM', 'HOST', 'STATE', 'IP', 'PATTERN', 'PEERS'],
    vms.map((v) => [
      v.name,
      v.host,
      v.state,
      v.spec?.ip ?? '?',
      v.spec?.image === 'debian' ? (v.spec.workload ? `debian, ${v.spec.workload.kind}` : 'debian') : (v.spec?.pattern ?? '?'),
      v.spec?.peers.join(',') || '-',
    ]),
  );
}

function formatStatus(s: LabStatus): string {
  const lines = [
    `lab '${s.name}' (10.${s.index}.0.0/16), up since ${s.createdAt}${s.upSeconds !== undefined ? ` (brought up in ${s.upSeconds.toFixed(1)} s)` : ''}`,
    `redis: ${s.redis.address} ${s.redis.ok ? 'ok' : 'NOT RESPONDING'}`,
    `inter-site links (into each site): ${s.sites.map((x) => `${x.name}: ${x.link}`).join('; ')}`,
    '',
    table(
      ['HOST', 'SITE', 'LIBVIRT URI', 'DATA IP', 'LIBVIRTD', 'AGENT', 'SENSOR', 'SPOOLED', 'VMS'],
      // The URI without its pkipath (the lab's client certificates): shorter to read.
      s.hosts.map((h) => [h.name, h.site, h.uri.replace(/\?.*$/, ''), h.dataIp, h.libvirtd, h.agent, h.sensor, h.spooled, h.vms]),
    ),
    '',
    formatVms(s.vms),
  ];
  return `${lines.join('\n')}\n`;
}
