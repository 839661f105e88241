import { UserError } from '../util/errors.js';
import { run } from '../util/exec.js';

/**
 * Our tc filters: one priority and handle that nobody else should use, and our
 * program names, so that we only ever replace or delete what we attached.
 */
export const TC_PRIORITY = 0xc0c0;
const HANDLE = '0xc0c0';
const OUR_PROGRAMS = ['vc_from_vm', 'vc_to_vm'];

type Hook = 'ingress' | 'egress';
const tc = (args: string[], netns?: string) => run('tc', args, netns ? { netns } : {});

export async function ensureClsact(dev: string, netns?: string): Promise<void> {
  const qdiscs = await tc(['qdisc', 'show', 'dev', dev], netns);
  if (/qdisc clsact/.test(qdiscs)) return;
  try {
    await tc(['qdisc', 'add', 'dev', dev, 'clsact'], netns);
  } catch (err) {
    if (/kind is unknown|Operation not supported/.test((err as Error).message)) {
      throw new UserError(`this kernel has no clsact qdisc (CONFIG_NET_SCH_INGRESS), so no tc program can watch ${dev}: modprobe sch_ingress, or count with libpcap (agent.sensor: pcap)`);
    }
    throw err;
  }
}

interface Filter {
  hook: Hook;
  pref: number;
  kind: string;
  name: string;
}

/**
 * The filters on a device, from `tc filter show`: kind (bpf, u32 ...) and, for
 * bpf, the program name ("name X" when tc may look the program up, which needs
 * CAP_SYS_ADMIN; else the pinned file's name after the handle, as in `vc_from_vm:[*fsobj]`).
 */
async function filters(dev: string, netns?: string): Promise<Filter[]> {
  const out: Filter[] = [];
  for (const hook of ['ingress', 'egress'] as const) {
    const text = await tc(['filter', 'show', 'dev', dev, hook], netns).catch(() => '');
    for (const line of text.split('\n')) {
      const m = /^filter .*pref (\d+) (\w+) chain \d+ (.+)$/.exec(line);
      if (!m) continue;
      const name = m[2] === 'bpf' ? (/ name (\S+)/.exec(m[3]!)?.[1] ?? /handle \S+ ([^\s:]+)/.exec(m[3]!)?.[1] ?? '') : '';
      out.push({ hook, pref: Number(m[1]), kind: m[2]!, name });
    }
  }
  return out;
}

const ours = (f: Filter) => f.pref === TC_PRIORITY && f.kind === 'bpf' && OUR_PROGRAMS.includes(f.name);

export async function ourFilters(dev: string, netns?: string): Promise<Filter[]> {
  return (await filters(dev, netns)).filter(ours);
}

/** Puts our programs on both hooks of `dev`, refusing if someone else's filter holds our priority. */
export async function replaceFilters(dev: string, programs: Record<Hook, string>, netns?: string): Promise<void> {
  const foreign = (await filters(dev, netns)).find((f) => f.pref === TC_PRIORITY && !ours(f));
  if (foreign) {
    throw new UserError(
      `a tc filter that is not ours (${foreign.kind}${foreign.name ? ` '${foreign.name}'` : ''}) sits at priority ${TC_PRIORITY} on ${dev} ${foreign.hook}: ` +
        `virt-cohort will not replace it; move it to another priority (tc filter del dev ${dev} ${foreign.hook} pref ${TC_PRIORITY})`,
    );
  }
  for (const hook of ['ingress', 'egress'] as const) {
    await tc(['filter', 'replace', 'dev', dev, hook, 'pref', String(TC_PRIORITY), 'handle', HANDLE, 'bpf', 'direct-action', 'object-pinned', programs[hook]], netns);
  }
}

export async function clearOurFilters(dev: string, netns?: string): Promise<void> {
  for (const f of await ourFilters(dev, netns)) {
    await tc(['filter', 'del', 'dev', dev, f.hook, 'pref', String(TC_PRIORITY), 'handle', HANDLE, 'bpf'], netns);
  }
}
