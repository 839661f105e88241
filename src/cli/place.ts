import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Command } from 'commander';
import { Hypervisor } from '@unraid/libvirt';
import { connectOnce } from '../config/redis.js';
import type { HostEntry } from '../collector/registry.js';
import { parseDuration } from '../collector/span.js';
import { requireLab } from '../lab/lab.js';
import { peersFor } from '../lab/patterns.js';
import { domainName, MAX_VMS } from '../lab/topology.js';
import { addVm } from '../lab/vm.js';
import { OBJECTIVES, placeCluster, type ClusterSpec, type InitialPlacement, type Objective } from '../placement/index.js';
import { readInventory } from '../placement/fromCollector.js';
import { trustedRoutes } from '../manager/manager.js';
import { RouteVetter } from '../manager/trust.js';
import { UserError } from '../util/errors.js';
import { environmentArgs, environmentOptions, tell } from './analysis.js';
import { configuredRoutes } from './manager.js';
import { printJson } from './options.js';
import { table } from './table.js';

/**
 * A cluster file (JSON; every key listed, anything else is refused):
 * {
 *   "vms": [ { "name": "web1", "memoryMiB": 512, "vcpus": 1 }, ... ],   required, at least one
 *   "pattern": "groups:2",          expected traffic: idle|pairs|ring|groups:K|all|peers:I,J (VM i = i-th listed); default: none
 *   "messagesPerSecond": 100,       assumed per peer for the pattern (default 100; for lab guests, what they send)
 *   "bytesPerMessage": 1000,        (default 1000; lab guests: the UDP payload, 32 to 1400)
 *   "template": "domain.xml"        libvirt domain XML for --apply, relative to the cluster file; {{name}}, {{memoryKiB}},
 * }                                 {{memoryMiB}}, {{vcpus}}, {{uuid}}, {{mac}} are replaced
 */
export interface ClusterFile {
  vms: { name: string; memoryMiB: number; vcpus: number }[];
  pattern: string | undefined;
  messagesPerSecond: number | undefined;
  bytesPerMessage: number | undefined;
  /** Absolute path. */
  template: string | undefined;
}

const TOP_KEYS = ['vms', 'pattern', 'messagesPerSecond', 'bytesPerMessage', 'template'];
const VM_KEYS = ['name', 'memoryMiB', 'vcpus'];

export function loadCluster(path: string): ClusterFile {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code) throw new UserError(`cannot read cluster file ${path}: ${e.message}`);
    throw new UserError(`cluster file ${path} is not valid JSON (${e.message.replace(/\s+/g, ' ')}): it is JSON, not YAML; see virt-cohort place --help`);
  }
  return parseCluster(raw, path);
}

export function parseCluster(raw: unknown, where: string): ClusterFile {
  const o = object(raw, `${where}: the top level`);
  unknownKeys(o, TOP_KEYS, `${where}: the top level`);
  if (!Array.isArray(o.vms) || o.vms.length === 0) throw new UserError(`${where}: "vms" must be a non-empty list of { "name", "memoryMiB", "vcpus" }`);
  const seen = new Set<string>();
  const vms = o.vms.map((v: unknown, i: number) => {
    const w = `${where}: vms[${i}]`;
    const x = object(v, w);
    unknownKeys(x, VM_KEYS, w);
    if (typeof x.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(x.name)) {
      throw new UserError(`${w}.name must be a name of letters, digits, '.', '_' or '-', got ${JSON.stringify(x.name)}`);
    }
    if (seen.has(x.name)) throw new UserError(`${w}: VM ${x.name} is listed twice: give each VM a unique name`);
    seen.add(x.name);
    return { name: x.name, memoryMiB: positive(x.memoryMiB, `${w}.memoryMiB`), vcpus: positive(x.vcpus, `${w}.vcpus`, true) };
  });
  if (o.pattern !== undefined) {
    if (typeof o.pattern !== 'string') throw new UserError(`${where}: "pattern" must be a string such as "groups:2"`);
    for (let i = 1; i <= vms.length; i++) peersFor(o.pattern, i, vms.length); // its errors name the fix
  }
  if (o.template !== undefined && typeof o.template !== 'string') throw new UserError(`${where}: "template" must be the path of a libvirt domain XML file`);
  return {
    vms,
    pattern: o.pattern as string | undefined,
    messagesPerSecond: o.messagesPerSecond === undefined ? undefined : positive(o.messagesPerSecond, `${where}: messagesPerSecond`),
    bytesPerMessage: o.bytesPerMessage === undefined ? undefined : positive(o.bytesPerMessage, `${where}: bytesPerMessage`),
    template: o.template === undefined ? undefined : resolve(dirname(where), o.template as string),
  };
}

function object(raw: unknown, where: string): Record<string, unknown> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new UserError(`${where} must be a JSON object`);
  return raw as Record<string, unknown>;
}

function unknownKeys(o: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new UserError(`${where} has unknown key "${k}": remove it or use one of ${allowed.join(', ')}`);
  }
}

function positive(raw: unknown, where: string, whole = false): number {
  if (typeof raw !== 'number' || !Number.isFinite(raw) || raw <= 0 || (whole && !Number.isInteger(raw))) {
    throw new UserError(`${where} must be a ${whole ? 'whole ' : ''}number above 0, got ${JSON.stringify(raw)}`);
  }
  return raw;
}

export function placeCommand(): Command {
  const cmd = new Command('place')
    .argument('<cluster.json>', 'the new virtual cluster, JSON (not YAML): {"vms":[{"name","memoryMiB","vcpus"}], "pattern":"groups:2", "template":"domain.xml"}')
    .description("hosts for a new virtual cluster from its expected traffic pattern and the objective (the seed's application manager); --apply defines and starts it");
  environmentOptions(cmd)
    .option('--objective <o>', 'time|cost|resources (see virt-cohort plan --help)', 'time')
    .option('--horizon <duration>', 'how long the cluster is expected to run: weighs hosts whose availability ends (e.g. 1h)', '1h')
    .option('--apply', "define and start each VM through libvirt on its host (the registry's URI), from the file's template; with --lab and no template, as lab guests")
    .addHelpText('after', `
The cluster file is JSON (every key; anything else is refused):
  {
    "vms": [ { "name": "web1", "memoryMiB": 512, "vcpus": 1 } ],   at least one
    "pattern": "groups:2",        expected traffic: idle|pairs|ring|groups:K|all|peers:I,J (VM i = the i-th listed); default none
    "messagesPerSecond": 100,     per peer, assumed for the pattern (default 100; lab guests send this many)
    "bytesPerMessage": 1000,      (default 1000; lab guests: UDP payload, 32 to 1400)
    "template": "domain.xml"      libvirt domain XML for --apply, relative to the cluster file;
  }                               {{name}} {{memoryKiB}} {{memoryMiB}} {{vcpus}} {{uuid}} {{mac}} are replaced

Exit status: 0 placed (and applied), 2 bad input (unknown key, missing file, cluster larger than the free capacity, host without URI) or Redis unreachable, 1 libvirt failed.`)
    .action(async (file: string, o) => {
      const objective = (OBJECTIVES as readonly string[]).includes(o.objective) ? (o.objective as Objective) : bad(`--objective '${o.objective}' is not known: use one of ${OBJECTIVES.join(', ')}`);
      const horizonSeconds = parseDuration(o.horizon, '--horizon') / 1000;
      if (!(horizonSeconds > 0)) throw new UserError(`--horizon '${o.horizon}' must be above 0 (e.g. 1h)`);
      let cluster = loadCluster(file);
      const template = o.apply && cluster.template !== undefined ? readTemplate(cluster.template) : undefined;
      if (o.apply && template === undefined && o.lab === undefined) {
        throw new UserError(`--apply needs a libvirt domain XML: add "template": "domain.xml" to ${file} (or use --lab NAME to start lab guests)`);
      }
      const args = await environmentArgs(cmd, o);
      const redis = await connectOnce(args.redis);
      let inv;
      try {
        inv = await readInventory(redis, { env: args.env, defaults: args.defaults });
      } finally {
        redis.disconnect();
      }
      tell(inv, args);
      // Lab guests send 20 datagrams/s of 256 B per peer unless told: place them for what they will send.
      const labGuests = Boolean(o.apply) && template === undefined;
      if (labGuests) cluster = { ...cluster, messagesPerSecond: cluster.messagesPerSecond ?? 20, bytesPerMessage: cluster.bytesPerMessage ?? 256 };
      const spec: ClusterSpec = {
        vms: cluster.vms.map((v) => ({ name: v.name, memoryKiB: v.memoryMiB * 1024, vcpus: v.vcpus })),
        ...(cluster.pattern !== undefined && { pattern: cluster.pattern }),
        ...(cluster.messagesPerSecond !== undefined && { messagesPerSecond: cluster.messagesPerSecond }),
        ...(cluster.bytesPerMessage !== undefined && { bytesPerMessage: cluster.bytesPerMessage }),
      };
      const placed = placeCluster(spec, inv.environment, { objective, horizonSeconds }, inv.vms);
      let applied: Applied[] | undefined;
      if (o.apply) {
        applied = template !== undefined
          ? await applyLibvirt(placed, cluster, template, inv.registry, new RouteVetter(await configuredRoutes()))
          : await applyLab(String(o.lab), placed, cluster);
      }
      if (o.json) return printJson({ ...placed, ...(applied && { applied }) });
      process.stdout.write(`${cluster.vms.length} new VM(s) for the ${objective} objective (${placed.unit}), ${inv.vms.length} running VM(s) kept where they are; ` +
        `method ${placed.method}; inter-site traffic expected: ${placed.score.interSiteBytes.toFixed(0)} B/s; hosts in use: ${placed.score.hostsUsed}\n\n`);
      const byVm = new Map((applied ?? []).map((a) => [a.vm, a] as const));
      const mem = new Map(cluster.vms.map((v) => [v.name, v] as const));
      process.stdout.write(table(['VM', 'HOST', 'SITE', 'MEMORY MiB', 'VCPUS', ...(applied ? ['STARTED AS'] : [])], placed.assignment.map((a) => [
        a.vm, a.host, a.site, mem.get(a.vm)!.memoryMiB, mem.get(a.vm)!.vcpus, ...(applied ? [byVm.get(a.vm)?.domain ?? '-'] : []),
      ])) + '\n');
      if (!o.apply) process.stdout.write('\n(not applied: add --apply to define and start them)\n');
    });
  return cmd;
}

function bad(message: string): never {
  throw new UserError(message);
}

export interface Applied {
  vm: string;
  host: string;
  domain: string;
  uuid?: string;
  mac?: string;
}

function readTemplate(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UserError(`cannot read the domain template ${path}: ${(err as Error).message}: fix "template" in the cluster file`);
  }
}

/** Locally administered, random: libvirt would pick one too, but the template may need it (e.g. for a DHCP entry). */
function randomMac(): string {
  return ['52', '54', '00', ...[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

export function fillTemplate(template: string, values: Record<string, string | number>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (whole, key: string) => {
    if (!(key in values)) throw new UserError(`the domain template has an unknown placeholder ${whole}: use ${Object.keys(values).map((k) => `{{${k}}}`).join(', ')}`);
    return String(values[key]);
  });
}

async function applyLibvirt(placed: InitialPlacement, cluster: ClusterFile, template: string, registry: readonly HostEntry[], vetter: RouteVetter): Promise<Applied[]> {
  const uri = new Map(registry.map((h) => [h.host, h.uri] as const));
  for (const a of placed.assignment) {
    if (!uri.get(a.host)) throw new UserError(`host ${a.host} has no libvirt URI in the registry: restart its agent with --libvirt-uri, or exclude the host from --env`);
  }
  const spec = new Map(cluster.vms.map((v) => [v.name, v] as const));
  // Every XML is built before anything is defined, so a bad template defines nothing.
  const jobs = placed.assignment.map((a) => {
    const v = spec.get(a.vm)!;
    const uuid = randomUUID();
    const mac = randomMac();
    const xml = fillTemplate(template, { name: v.name, memoryKiB: Math.round(v.memoryMiB * 1024), memoryMiB: v.memoryMiB, vcpus: v.vcpus, uuid, mac });
    return { a, xml, uuid, mac };
  });
  // The registry's URIs are what any Redis writer put there: used only where the manager's configuration vouches for them.
  const { refused } = trustedRoutes(registry.filter((h) => placed.assignment.some((a) => a.host === h.host)), vetter);
  if (refused.length) throw new UserError(`host ${refused[0]!.host}: ${refused[0]!.why}`);
  const done: Applied[] = [];
  for (const { a, xml, uuid, mac } of jobs) {
    const hv = new Hypervisor({ uri: uri.get(a.host)! });
    try {
      await hv.connectOpen();
      const dom = await hv.domainDefineXML(xml);
      await hv.domainCreate(dom);
      done.push({ vm: a.vm, host: a.host, domain: await hv.domainGetName(dom), uuid, mac });
    } catch (err) {
      const before = done.length ? ` (already started: ${done.map((d) => `${d.vm} on ${d.host}`).join(', ')})` : '';
      throw new UserError(`cannot define and start ${a.vm} on ${a.host} (${uri.get(a.host)}): ${(err as Error).message}${before}`, 1);
    } finally {
      await hv.connectClose().catch(() => undefined);
    }
  }
  return done;
}

/**
 * Lab guests: each gets the next free lab index (its address), and the pattern is turned into the
 * explicit peer list of those indexes, so a second cluster in a lab talks only within itself.
 */
async function applyLab(labName: string, placed: InitialPlacement, cluster: ClusterFile): Promise<Applied[]> {
  const lab = await requireLab(labName);
  for (const v of cluster.vms) {
    if (lab.vms[v.name]) throw new UserError(`VM '${v.name}' already exists in lab '${lab.name}': rename it in the cluster file`);
  }
  const used = new Set(Object.values(lab.vms).map((v) => v.index));
  const index: number[] = [];
  for (let i = 1; i <= MAX_VMS && index.length < cluster.vms.length; i++) if (!used.has(i)) index.push(i);
  if (index.length < cluster.vms.length) throw new UserError(`lab '${lab.name}' has room for ${index.length} more VM(s) (at most ${MAX_VMS}): remove some or use a smaller cluster`);
  const n = cluster.vms.length;
  const hostOf = new Map(placed.assignment.map((a) => [a.vm, a.host] as const));
  const done: Applied[] = [];
  for (let i = 0; i < n; i++) {
    const v = cluster.vms[i]!;
    const peers = cluster.pattern ? peersFor(cluster.pattern, i + 1, n).map((j) => index[j - 1]!) : [];
    const added = await addVm(lab.name, {
      name: v.name, host: hostOf.get(v.name)!, index: index[i]!, pattern: peers.length ? `peers:${peers.join(',')}` : 'idle', cluster: n,
      rate: Math.round(cluster.messagesPerSecond!), size: Math.round(cluster.bytesPerMessage!), memoryMiB: v.memoryMiB, wait: true,
    });
    done.push({ vm: v.name, host: added.host, domain: domainName(lab, v.name), mac: added.mac });
  }
  return done;
}
