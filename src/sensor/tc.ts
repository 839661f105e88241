import { CommandError, UserError } from '../util/errors.js';
import { run } from '../util/exec.js';

/**
 * Our tc filters: one priority and handle that nobody else should use, and our
 * program names, so that we only ever replace or delete what we attached.
 *
 * Every tap of a host is handled in one `tc -batch` process (with -force, so
 * one tap that fails does not stop the others): five `tc` runs per tap took
 * 59 s for 1,000 taps, nearly all of it starting processes
 * (docs/measurements.md, the attach bench). TCX links (Linux 6.6+) are not
 * used: Debian 12's 6.1 has none, so they could not be measured here, and a
 * TCX link carries no classid, which is how our program finds its tap's slot.
 */
export const TC_PRIORITY = 0xc0c0;
const HANDLE = '0xc0c0';
const OUR_PROGRAMS = ['vc_from_vm', 'vc_to_vm'];
export const ATTACH_PATH = 'tc -batch';

export type Hook = 'ingress' | 'egress';
const HOOKS = ['ingress', 'egress'] as const;

export interface Filter {
  hook: Hook;
  pref: number;
  kind: string;
  /** bpf only: the program's name. */
  name: string;
  /** The filter's classid minor: for ours, the tap's slot in vc_slots. */
  classid: number;
}

/** What tc shows on one device, or why it could not (the device is gone). */
export type TapState = { clsact: boolean; filters: Filter[] } | { error: string };

export interface TcLine {
  dev: string;
  args: string[];
}

/**
 * Runs the lines in one `tc -force -batch -`. Returns what each failed line
 * said, by device (the first failure of each), and the output of the lines
 * that did not fail, in order (with `json`: one JSON array per line).
 */
async function batch(lines: TcLine[], netns: string | undefined, json: boolean): Promise<{ errors: Map<string, string>; failed: Set<number>; out: string[] }> {
  for (const l of lines) {
    const bad = l.args.find((a) => !a || /[\s"'\\#]/.test(a));
    if (bad !== undefined) throw new UserError(`'${bad}' cannot be passed to tc -batch (no blanks, quotes, '#' or '\\'): choose a pin root without them (agent.pinRoot)`);
  }
  if (!lines.length) return { errors: new Map(), failed: new Set(), out: [] };
  const input = `${lines.map((l) => l.args.join(' ')).join('\n')}\n`;
  const args = [...(json ? ['-j'] : []), '-force', '-batch', '-'];
  let stdout: string;
  let stderr = '';
  try {
    stdout = await run('tc', args, { input, timeoutMs: 120_000, ...(netns ? { netns } : {}) });
  } catch (err) {
    // Exit 1 when any line failed: each failure is named on stderr, the others went through.
    if (!(err instanceof CommandError) || err.code !== 1 || !/Command failed -:\d+/.test(err.stderr)) throw err;
    stdout = err.stdout;
    stderr = err.stderr;
  }
  const failed = new Set<number>();
  const errors = new Map<string, string>();
  let said: string[] = [];
  for (const line of stderr.split('\n')) {
    const m = /^Command failed -:(\d+)$/.exec(line.trim());
    if (!m) {
      if (line.trim()) said.push(line.trim());
      continue;
    }
    const at = Number(m[1]) - 1;
    failed.add(at);
    const dev = lines[at]?.dev;
    if (dev !== undefined && !errors.has(dev)) errors.set(dev, `tc ${lines[at]!.args.join(' ')}: ${said.join('; ') || 'failed'}`);
    said = [];
  }
  const out = json ? stdout.split('\n').filter((l) => l.trim()) : [stdout];
  if (json && out.length !== lines.length - failed.size) {
    throw new Error(`tc -j -batch printed ${out.length} results for ${lines.length - failed.size} commands that succeeded: this tc prints its JSON differently; please report it`);
  }
  return { errors, failed, out };
}

interface JsonFilter {
  pref?: number;
  kind?: string;
  options?: { handle?: string; flowid?: string; bpf_name?: string; prog?: { name?: string } };
}

/**
 * The qdiscs and filters of each device: one tc process for all of them. The
 * qdiscs come from one `qdisc show` of every device: the kernel dumps every
 * device's qdiscs even for `qdisc show dev X` (tc filters them itself), so
 * one call per tap made a full reconcile of 1,000 taps take 5 s.
 */
export async function showTaps(devs: string[], netns?: string): Promise<Map<string, TapState>> {
  if (!devs.length) return new Map();
  const lines = [{ dev: '', args: ['qdisc', 'show'] }, ...devs.flatMap((dev) => HOOKS.map((h) => ({ dev, args: ['filter', 'show', 'dev', dev, h] })))];
  const { errors, failed, out } = await batch(lines, netns, true);
  if (failed.has(0)) throw new Error(`tc qdisc show failed: ${errors.get('')}`);
  const results = new Map<string, unknown[][]>();
  let next = 0;
  lines.forEach((l, i) => {
    const r = failed.has(i) ? [] : (JSON.parse(out[next++]!) as unknown[]);
    results.set(l.dev, [...(results.get(l.dev) ?? []), r]);
  });
  const clsact = new Set((results.get('')![0] as { kind?: string; dev?: string }[]).filter((q) => q.kind === 'clsact').map((q) => q.dev));
  const states = new Map<string, TapState>();
  for (const dev of devs) {
    const error = errors.get(dev);
    if (error) {
      states.set(dev, { error });
      continue;
    }
    const filters = results.get(dev)!.flatMap((fs, i) => (fs as JsonFilter[]).filter((f) => f.kind !== 'bpf' || f.options).map((f) => toFilter(HOOKS[i]!, f)));
    states.set(dev, { clsact: clsact.has(dev), filters });
  }
  return states;
}

function toFilter(hook: Hook, f: JsonFilter): Filter {
  const o = f.options ?? {};
  const name = f.kind === 'bpf' ? (o.prog?.name ?? o.bpf_name?.split(':')[0] ?? '') : '';
  const classid = Number.parseInt(o.flowid?.split(':')[1] ?? '0', 16) || 0;
  return { hook, pref: f.pref ?? -1, kind: f.kind ?? '', name, classid };
}

const ours = (f: Filter) => f.pref === TC_PRIORITY && f.kind === 'bpf' && OUR_PROGRAMS.includes(f.name);

/** Our filters on both hooks, each carrying `slot`: the tap is counted as it should be. */
export function attachedWith(state: TapState, slot: number): boolean {
  return 'filters' in state && HOOKS.every((h) => state.filters.some((f) => f.hook === h && ours(f) && f.classid === slot));
}

/** The hooks of `dev` that hold one of our filters. */
export function ourHooks(state: TapState): Hook[] {
  return 'filters' in state ? state.filters.filter(ours).map((f) => f.hook) : [];
}

/** Someone else's filter at our priority: never replaced, so the tap cannot be counted. */
export function foreignFilter(dev: string, state: TapState): UserError | undefined {
  const foreign = 'filters' in state ? state.filters.find((f) => f.pref === TC_PRIORITY && !ours(f)) : undefined;
  if (!foreign) return undefined;
  return new UserError(
    `a tc filter that is not ours (${foreign.kind}${foreign.name ? ` '${foreign.name}'` : ''}) sits at priority ${TC_PRIORITY} on ${dev} ${foreign.hook}: ` +
      `virt-cohort will not replace it; move it to another priority (tc filter del dev ${dev} ${foreign.hook} pref ${TC_PRIORITY})`,
  );
}

/** The lines that put our programs on both hooks of `dev` with `slot` as their classid (and clsact if missing). */
export function attachLines(dev: string, state: TapState, programs: Record<Hook, string>, slot: number): TcLine[] {
  const lines: TcLine[] = 'clsact' in state && state.clsact ? [] : [{ dev, args: ['qdisc', 'add', 'dev', dev, 'clsact'] }];
  for (const hook of HOOKS) {
    lines.push({
      dev,
      args: ['filter', 'replace', 'dev', dev, hook, 'pref', String(TC_PRIORITY), 'handle', HANDLE, 'bpf', 'direct-action', 'object-pinned', programs[hook], 'classid', `:${slot.toString(16)}`],
    });
  }
  return lines;
}

/** The lines that delete our filters from `dev`, and only ours. */
export function detachLines(dev: string, state: TapState): TcLine[] {
  if (!('filters' in state)) return [];
  return state.filters.filter(ours).map((f) => ({ dev, args: ['filter', 'del', 'dev', dev, f.hook, 'pref', String(TC_PRIORITY), 'handle', HANDLE, 'bpf'] }));
}

/** Runs the lines in one tc process; returns, by device, why its lines failed (a missing clsact said plainly). */
export async function apply(lines: TcLine[], netns?: string): Promise<Map<string, string>> {
  const { errors } = await batch(lines, netns, false);
  for (const [dev, e] of errors) {
    if (/qdisc add/.test(e) && /kind is unknown|Operation not supported/.test(e)) {
      errors.set(dev, `this kernel has no clsact qdisc (CONFIG_NET_SCH_INGRESS), so no tc program can watch ${dev}: modprobe sch_ingress, or count with libpcap (agent.sensor: pcap)`);
    }
  }
  return errors;
}

/** Deletes our filters from the devices (those that still exist), leaving everyone else's. */
export async function clearOurFilters(devs: string[], netns?: string): Promise<void> {
  const states = await showTaps(devs, netns);
  await apply(
    devs.flatMap((d) => detachLines(d, states.get(d)!)),
    netns,
  );
}
