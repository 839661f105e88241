import { randomUUID } from 'node:crypto';
import { Command } from 'commander';
import { connectOnce } from '../config/redis.js';
import { OBJECTIVES } from '../config/schema.js';
import type { HostEntry } from '../collector/registry.js';
import { parseDuration } from '../collector/span.js';
import { defineAndStartAll, fillTemplate, randomMac } from '../libvirt/define.js';
import { clusterSpec, loadCluster, readTemplate, type Applied, type ClusterFile } from '../placement/cluster.js';
import { placeCluster, type InitialPlacement, type Objective } from '../placement/index.js';
import { readInventory, rulesOf } from '../placement/fromCollector.js';
import { RouteVetter, trustedRoutes } from '../manager/trust.js';
import { IncompleteHostError, UserError } from '../util/errors.js';
import { environmentArgs, environmentOptions, inForce, tell } from './analysis.js';
import { loadLab } from './labs.js';
import { configuredRoutes } from './manager.js';
import { configuredRules, sayIssues } from './rules.js';
import { printJson } from './options.js';
import { table } from './table.js';

export function placeCommand(): Command {
  const cmd = new Command('place')
    .argument('<cluster.json>', 'the new virtual cluster, JSON (not YAML): {"vms":[{"name","memoryMiB","vcpus"}], "pattern":"groups:2", "template":"domain.xml"}')
    .description("hosts for a new virtual cluster from its expected traffic pattern and the objective (the seed's application manager); --apply defines and starts it");
  environmentOptions(cmd)
    .option('--objective <o>', 'time|cost|resources (see virt-cohort plan --help)', 'time')
    .option('--horizon <duration>', 'how long the cluster is expected to run: weighs hosts whose availability ends (e.g. 1h)', '1h')
    .option('--config <file>', 'YAML configuration, for its rules: section (default: $VIRT_COHORT_CONFIG, else /etc/virt-cohort/config.yaml if it exists)')
    .option('--apply', "define and start each VM through libvirt on its host (the registry's URI), from the file's template; with --lab and no template, as lab guests")
    .addHelpText(
      'after',
      `
The cluster file is JSON (every key; anything else is refused):
  {
    "vms": [ { "name": "web1", "memoryMiB": 512, "vcpus": 1 } ],   at least one
    "pattern": "groups:2",        expected traffic: idle|pairs|ring|groups:K|all|peers:I,J (VM i = the i-th listed); default none
    "messagesPerSecond": 100,     per peer, assumed for the pattern (default 100; lab guests send this many)
    "bytesPerMessage": 1000,      (default 1000; lab guests: UDP payload, 32 to 1400)
    "template": "domain.xml"      libvirt domain XML for --apply, relative to the cluster file;
  }                               {{name}} {{memoryKiB}} {{memoryMiB}} {{vcpus}} {{uuid}} {{mac}} are replaced

Exit status: 0 placed (and applied), 2 bad input (unknown key, missing file, cluster larger than the free capacity, host without URI) or Redis unreachable, 1 libvirt failed.`,
    )
    .action(async (file: string, o) => {
      const objective = (OBJECTIVES as readonly string[]).includes(o.objective) ? (o.objective as Objective) : bad(`--objective '${o.objective}' is not known: use one of ${OBJECTIVES.join(', ')}`);
      const horizonSeconds = parseDuration(o.horizon, '--horizon') / 1000;
      if (!(horizonSeconds > 0)) throw new UserError(`--horizon '${o.horizon}' must be above 0 (e.g. 1h)`);
      let cluster = loadCluster(file);
      const template = o.apply && cluster.template !== undefined ? readTemplate(cluster.template) : undefined;
      if (o.apply && template === undefined && o.lab === undefined) {
        throw new UserError(`--apply needs a libvirt domain XML: add "template": "domain.xml" to ${file} (or use --lab NAME to start lab guests)`);
      }
      let args = await environmentArgs(cmd, o);
      const redis = await connectOnce(args.redis);
      let inv: Awaited<ReturnType<typeof readInventory>>;
      try {
        args = await inForce(redis, args);
        inv = await readInventory(redis, { env: args.env, defaults: args.defaults });
      } finally {
        redis.disconnect();
      }
      tell(inv, args);
      const rules = rulesOf(inv, configuredRules(o.config));
      if (sayIssues(rules)) throw new UserError('the rules have errors (above): correct them first (virt-cohort rules)');
      // Lab guests send 20 datagrams/s of 256 B per peer unless told: place them for what they will send.
      const labGuests = Boolean(o.apply) && template === undefined;
      if (labGuests) cluster = { ...cluster, messagesPerSecond: cluster.messagesPerSecond ?? 20, bytesPerMessage: cluster.bytesPerMessage ?? 256 };
      const placed = placeCluster(clusterSpec(cluster), inv.environment, { objective, horizonSeconds, rules: rules.rules }, inv.vms);
      for (const b of placed.broken) process.stderr.write(`virt-cohort: rule not kept (no room for it): ${b}\n`);
      let applied: Applied[] | undefined;
      if (o.apply) {
        applied =
          template !== undefined
            ? await applyLibvirt(placed, cluster, template, inv.registry, new RouteVetter(await configuredRoutes(o.config)))
            : await (await loadLab()).startLabGuests(String(o.lab), placed, cluster);
      }
      if (o.json) return printJson({ ...placed, ...(applied && { applied }) });
      process.stdout.write(
        `${cluster.vms.length} new VM(s) for the ${objective} objective (${placed.unit}), ${inv.vms.length} running VM(s) kept where they are; ` +
          `method ${placed.method}; inter-site traffic expected: ${placed.score.interSiteBytes.toFixed(0)} B/s; hosts in use: ${placed.score.hostsUsed}\n\n`,
      );
      const byVm = new Map((applied ?? []).map((a) => [a.vm, a] as const));
      const mem = new Map(cluster.vms.map((v) => [v.name, v] as const));
      process.stdout.write(
        `${table(
          ['VM', 'HOST', 'SITE', 'MEMORY MiB', 'VCPUS', ...(applied ? ['STARTED AS'] : [])],
          placed.assignment.map((a) => [a.vm, a.host, a.site, mem.get(a.vm)!.memoryMiB, mem.get(a.vm)!.vcpus, ...(applied ? [byVm.get(a.vm)?.domain ?? '-'] : [])]),
        )}\n`,
      );
      if (!o.apply) process.stdout.write('\n(not applied: add --apply to define and start them)\n');
    });
  return cmd;
}

function bad(message: string): never {
  throw new UserError(message);
}

/** Every XML is built before anything is defined, so a bad template or a host without a URI defines nothing. */
async function applyLibvirt(placed: InitialPlacement, cluster: ClusterFile, template: string, registry: readonly HostEntry[], vetter: RouteVetter): Promise<Applied[]> {
  const uri = new Map(registry.map((h) => [h.host, h.uri] as const));
  for (const a of placed.assignment) if (!uri.get(a.host)) throw new IncompleteHostError(a.host, 'uri');
  const spec = new Map(cluster.vms.map((v) => [v.name, v] as const));
  const jobs = placed.assignment.map((a) => {
    const v = spec.get(a.vm)!;
    const uuid = randomUUID();
    const mac = randomMac();
    const xml = fillTemplate(template, { name: v.name, memoryKiB: Math.round(v.memoryMiB * 1024), memoryMiB: v.memoryMiB, vcpus: v.vcpus, uuid, mac });
    return { vm: a.vm, host: a.host, uri: uri.get(a.host)!, xml, uuid, mac };
  });
  // The registry's URIs are what any Redis writer put there: used only where the manager's configuration vouches for them.
  const { refused } = trustedRoutes(
    registry.filter((h) => placed.assignment.some((a) => a.host === h.host)),
    vetter,
  );
  if (refused.length) throw new UserError(`host ${refused[0]!.host}: ${refused[0]!.why}`);
  const domains = await defineAndStartAll(jobs);
  return jobs.map((j, i) => ({ vm: j.vm, host: j.host, domain: domains[i]!, uuid: j.uuid, mac: j.mac }));
}
