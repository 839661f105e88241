import { writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { loadSettings } from '../config/load.js';
import { connectOnce } from '../config/redis.js';
import { Registry } from '../collector/registry.js';
import { EXPORT_FORMATS, exportRules, type ExportFormat } from '../placement/export.js';
import { readCollector, rulesOf, type RuleConfig } from '../placement/fromCollector.js';
import { members, type RuleSet } from '../placement/rules.js';
import { clusterGroups } from '../placement/view.js';
import { UserError } from '../util/errors.js';
import { redisUrl } from './manager.js';
import { printJson } from './options.js';
import { configOption, redisOption } from './settings.js';
import { table } from './table.js';

const common = (c: Command) => configOption(c.addOption(redisOption()).option('--lab <name>', "use this lab's Redis"));

/** The configuration's rules (and manager.exclude), with the file they came from. */
export function configuredRules(file: string | false | undefined): RuleConfig {
  const { config, file: read } = loadSettings({ file });
  return { rules: config.rules, exclude: config.manager.exclude, file: read ?? 'configuration' };
}

/** Every issue on stderr; true when one is an error. */
export function sayIssues(set: RuleSet): boolean {
  for (const i of set.issues) process.stderr.write(`virt-cohort: ${i.level}: ${i.message}\n`);
  return set.issues.some((i) => i.level === 'error');
}

export function rulesCommand(): Command {
  const cmd = new Command('rules').description('the operator rules in force (configuration rules: and each VM’s domain metadata), with their source; export them and the learned groups');
  common(cmd.command('list', { isDefault: true }))
    .description('list the rules in force, each with the VMs it applies to now and where it was written; warnings and errors on stderr (exit 2 on an error)')
    .option('--json', 'print JSON')
    .action(async (o) => {
      const cfg = configuredRules(o.config);
      const redis = await connectOnce(await redisUrl(o));
      let set: RuleSet;
      let names: string[];
      try {
        const reg = new Registry(redis);
        const [directory, registry] = await Promise.all([reg.vms(), reg.hosts()]);
        set = rulesOf({ directory, registry }, cfg);
        names = directory.filter((v) => v.state !== 'stopped').map((v) => v.name);
      } finally {
        redis.disconnect();
      }
      const rows = set.rules.map((r) => ({ ...r, members: members(r, names) }));
      if (o.json) printJson({ rules: rows, issues: set.issues });
      else {
        process.stdout.write(
          `${table(
            ['NAME', 'KIND', 'VMS', 'WHERE', 'APPLIES TO', 'SOURCE'],
            rows.map((r) => [
              r.name,
              r.kind,
              r.vms.join(','),
              r.scope ? `by ${r.scope}` : r.hosts ? `host ${r.hosts.join(',')}` : r.sites ? `site ${r.sites.join(',')}` : '-',
              r.members.join(',') || '-',
              r.source,
            ]),
          )}\n`,
        );
        if (!rows.length) process.stdout.write('no rules: add a rules: section to the configuration, or <vc:apart>/<vc:together>/<vc:must>/<vc:prefer> to a VM’s metadata (docs/rules.md)\n');
      }
      if (sayIssues(set)) process.exitCode = 2;
    });
  common(cmd.command('export'))
    .description('write the learned groups and the rules as another platform’s affinity objects (docs/rules.md says what each format can express)')
    .requiredOption('--format <f>', EXPORT_FORMATS.join('|'))
    .option('--vmid <name=id...>', 'Proxmox VE VMID of a VM (repeatable); a numeric VM name is its own VMID')
    .option('--span <n>', 'periods of traffic the groups are learned from', '10')
    .option('--output <file>', 'write there instead of stdout')
    .action(async (o) => {
      if (!(EXPORT_FORMATS as readonly string[]).includes(o.format)) throw new UserError(`--format '${o.format}' is not known: use one of ${EXPORT_FORMATS.join(', ')}`);
      const vmids = new Map<string, number>();
      for (const pair of (o.vmid as string[] | undefined) ?? []) {
        const m = /^(.+)=(\d+)$/.exec(pair);
        if (!m) throw new UserError(`--vmid '${pair}' must be NAME=ID, e.g. --vmid web1=101`);
        vmids.set(m[1]!, Number(m[2]));
      }
      const cfg = configuredRules(o.config);
      const redis = await connectOnce(await redisUrl(o));
      try {
        const view = await readCollector(redis, { query: { type: 'weighted', span: o.span, coefficient: 2 } });
        const set = rulesOf(view, cfg);
        if (sayIssues(set)) throw new UserError('the rules have errors (above): correct them before exporting');
        if (view.answer.status !== 'ok') process.stderr.write(`virt-cohort: no learned groups: the collector handed the query back (${view.answer.reason}); the rules alone are exported\n`);
        const groups = view.answer.status === 'ok' ? clusterGroups(view).filter((g) => g.significant && g.members.length > 1) : [];
        const text = exportRules(o.format as ExportFormat, {
          rules: set.rules,
          groups: groups.map((g) => g.members),
          vms: view.vms.map((v) => v.name),
          hosts: view.registry.map((h) => ({ name: h.host, site: h.site })),
          vmids,
          where: new Map(view.vms.map((v) => [v.name, v.host])),
        });
        if (!o.output) return void process.stdout.write(text);
        writeFileSync(o.output, text);
        process.stderr.write(`virt-cohort: ${o.output}: ${groups.length} learned group(s) and ${set.rules.length} rule(s) as ${o.format}\n`);
      } finally {
        redis.disconnect();
      }
    });
  return cmd;
}
