import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { GROUP_METHODS, type GroupMethod, type TrafficMeasure } from '../analysis/index.js';
import { connectOnce } from '../config/redis.js';
import { checkQuery, type QueryOptions } from '../collector/query.js';
import { parseDuration } from '../collector/span.js';
import { collectReport } from '../report/data.js';
import { reportHtml, reportSvg, spanLine, summaryLine } from '../report/render.js';
import { UserError } from '../util/errors.js';
import { environmentArgs, environmentOptions, inForce, tell } from './analysis.js';
import { printJson } from './options.js';
import { EXIT_REFORMULATE, render } from './stats.js';

const TYPES = ['mean', 'weighted'] as const;
const METHODS: readonly GroupMethod[] = GROUP_METHODS;
const MEASURES: readonly TrafficMeasure[] = ['bytes', 'messages'];

export function reportCommand(): Command {
  const cmd = environmentOptions(new Command('report'), false)
    .description(
      'a picture of the cluster over a span: the communication matrix as a heatmap, the groups, the sites, hosts and VMs, ' +
        'the inter-site share of traffic and the migrations, as an SVG and/or a self-contained HTML page',
    )
    .option('--svg <file>', 'write the report as one SVG picture')
    .option('--html <file>', 'write the report as a self-contained HTML page (inline SVG and CSS, nothing fetched)')
    .option('--json', 'print the data behind the pictures as JSON (the matrix as sparse cells, per second)')
    .option('--span <n|duration>', 'traffic to show, ending with the newest ended period: a count of periods (120) or a duration (1h, 15m)', '1h')
    .option('--type <type>', 'mean|weighted: the plain average over the span, or each period counting --coefficient times the one before', 'mean')
    .option('--coefficient <n>', 'weighted: how many times a period counts the one before it (> 0)', '2')
    .option('--method <m>', 'cohesive|louvain|seed: how the groups are found (as virt-cohort groups)', 'cohesive')
    .option('--measure <m>', 'bytes|messages: what defines the groups and colours the matrix', 'bytes')
    .option('--wait <duration>', 'how long to wait for hosts that have not reported the newest period yet', '0')
    .option('--approx', "if reports are still missing after the wait, estimate them from each host's period before (the report says so)")
    .addHelpText(
      'after',
      '\nExample: virt-cohort report --lab demo --span 15m --html report.html --svg report.svg\n' +
        '\nExit status: 0 written, 3 the collector handed the query back (too few periods yet, or hosts missing: ' +
        'the output says when it can be answered; try a shorter --span), 2 bad input, Redis unreachable or no host registered.',
    )
    .action(async (o) => {
      if (!o.svg && !o.html && !o.json) throw new UserError('say what to produce: --svg FILE and/or --html FILE (or --json for the data)');
      const type = String(o.type);
      if (!(TYPES as readonly string[]).includes(type)) throw new UserError(`--type '${type}' is not usable here: use mean or weighted`);
      const method = oneOf(o.method, METHODS, '--method');
      const measure = oneOf(o.measure, MEASURES, '--measure');
      const coefficient = Number(o.coefficient);
      if (String(o.coefficient).trim() === '' || !Number.isFinite(coefficient)) throw new UserError(`--coefficient '${o.coefficient}' is not a number`);
      const q: QueryOptions = { type: type as QueryOptions['type'], span: String(o.span), coefficient, approx: Boolean(o.approx), maxWaitMs: parseDuration(String(o.wait), '--wait') };
      checkQuery(q); // a bad span exits 2 before anything is connected
      let args = await environmentArgs(cmd, o);
      const redis = await connectOnce(args.redis);
      try {
        args = await inForce(redis, args);
        const now = Date.now();
        const { view, data } = await collectReport(redis, { query: { ...q, now }, method, measure, now, ...(args.env && { env: args.env }), defaults: args.defaults });
        tell({ ...view, notes: [] }, args); // its notes come with the report's own, below
        if (!data) {
          if (o.json) printJson(view.answer);
          else process.stdout.write(render(view.answer));
          process.stderr.write('virt-cohort: no report written: the collector cannot answer for this span yet (see above); a shorter --span may be answerable now\n');
          process.exitCode = EXIT_REFORMULATE;
          return;
        }
        const written: string[] = [];
        if (o.svg) written.push(await save(o.svg, reportSvg(data), '--svg'));
        if (o.html) written.push(await save(o.html, reportHtml(data), '--html'));
        for (const n of data.notes) process.stderr.write(`virt-cohort: ${n}\n`);
        if (o.json) return printJson(data);
        process.stdout.write(`${spanLine(data)}\n${summaryLine(data)}\n${written.map((f) => `wrote ${f}\n`).join('')}`);
      } finally {
        redis.disconnect();
      }
    });
  return cmd;
}

async function save(file: string, content: string, what: string): Promise<string> {
  const path = resolve(file);
  try {
    await writeFile(path, content);
  } catch (err) {
    throw new UserError(`${what}: cannot write ${path} (${(err as Error).message}): choose a writable path`);
  }
  return path;
}

function oneOf<T extends string>(value: string, allowed: readonly T[], what: string): T {
  if (!allowed.includes(value as T)) throw new UserError(`${what} '${value}' is not known: use one of ${allowed.join(', ')}`);
  return value as T;
}
