import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { logger } from '../util/log.js';
import { BPFFS, ensureBpffs } from './bpffs.js';

// Loading and pinning the counting programs, and what the kernel took.
const log = logger('sensor');

/** Flow maps with one copy of the counters per CPU (the default), or one shared copy with atomic adds. */
export type FlowMaps = 'per-CPU' | 'shared';

export interface EbpfOptions {
  /** Where maps and programs are pinned; the layout version is appended (…/v3). */
  pinRoot: string;
  /** Network namespace (/run/netns/NAME) the taps live in; the root namespace if absent. */
  netns?: string;
  /** The compiled counter.bpf.o; counter-shared.bpf.o, its fallback, sits next to it. */
  object: string;
  /** Load and pin the programs when nothing is pinned yet (the agent); a viewer passes false. */
  load?: boolean;
  /** Which flow maps to load when nothing is pinned: per-CPU, falling back to shared (the default), or only one kind. */
  maps?: 'auto' | FlowMaps;
}

/** The fallback object: counter.bpf.o → counter-shared.bpf.o. */
export const sharedObject = (object: string) => object.replace(/\.bpf\.o$/, '-shared.bpf.o');

/** The pin root must sit on bpffs, which is mounted here if missing (the agent runs as root). */
export async function requireBpffs(root: string): Promise<void> {
  if (!root.startsWith(`${BPFFS}/`)) throw new UserError(`the pin root must be under ${BPFFS} (got ${root}): set agent.pinRoot`);
  await ensureBpffs();
}

/** Loads and pins the per-CPU programs, or the shared ones where the kernel refuses per-CPU hash maps. */
export async function load(opts: EbpfOptions, dir: string): Promise<void> {
  const want = opts.maps ?? 'auto';
  const objects: [FlowMaps, string][] = [];
  if (want !== 'shared') objects.push(['per-CPU', opts.object]);
  if (want !== 'per-CPU') objects.push(['shared', sharedObject(opts.object)]);
  let first: Error | undefined;
  for (const [maps, object] of objects) {
    if (!(await exists(object))) throw new UserError(`the BPF object ${object} is missing: run 'npm run setup' (it builds bpf/)`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(join(dir, 'maps'), { recursive: true });
    try {
      await run('bpftool', ['prog', 'loadall', object, join(dir, 'progs'), 'type', 'classifier', 'pinmaps', join(dir, 'maps')]);
      if (first)
        log.warn({ err: first }, `the kernel refused per-CPU flow maps (${first.message.split('\n')[0]}): counting with one shared map and atomic adds, the same counts at a higher cost per packet`);
      log.info({ dir, maps }, 'loaded and pinned the counting programs');
      return;
    } catch (err) {
      first ??= err as Error;
    }
  }
  await rm(dir, { recursive: true, force: true });
  throw new UserError(
    `the kernel refused the BPF program (${first!.message.split('\n')[0]}): ` +
      'it needs BPF, cls_bpf and map-in-map support (Linux 5.6+; see dmesg and `virt-cohort doctor`); ' +
      'or count with libpcap on this host (agent.sensor: pcap), at a far higher CPU cost',
  );
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
