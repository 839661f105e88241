import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { logger } from '../util/log.js';
import { BPFFS, ensureBpffs } from './bpffs.js';

// Loading and pinning the counting programs, and what the kernel took.
const log = logger('sensor');

/** One shared copy of the counters with atomic adds (the default), or one copy per CPU (counter-percpu.bpf.o; see bpf/counter.bpf.c). */
export type FlowMaps = 'per-CPU' | 'shared';

export interface EbpfOptions {
  /** Where maps and programs are pinned; the layout version is appended (…/v3). */
  pinRoot: string;
  /** Network namespace (/run/netns/NAME) the taps live in; the root namespace if absent. */
  netns?: string;
  /** The compiled counter.bpf.o; counter-percpu.bpf.o, its per-CPU build, sits next to it where it was built. */
  object: string;
  /** Load and pin the programs when nothing is pinned yet (the agent); a viewer passes false. */
  load?: boolean;
  /** Which flow maps to load when nothing is pinned (default shared; what is pinned already is used as it is). */
  maps?: FlowMaps;
}

/** The per-CPU build of an object: counter.bpf.o → counter-percpu.bpf.o. */
export const percpuObject = (object: string) => object.replace(/\.bpf\.o$/, '-percpu.bpf.o');

/** The pin root must sit on bpffs, which is mounted here if missing (the agent runs as root). */
export async function requireBpffs(root: string): Promise<void> {
  if (!root.startsWith(`${BPFFS}/`)) throw new UserError(`the pin root must be under ${BPFFS} (got ${root}): set agent.pinRoot`);
  await ensureBpffs();
}

/** Loads and pins the counting programs: shared flow maps, or per-CPU ones when asked. */
export async function load(opts: EbpfOptions, dir: string): Promise<void> {
  const maps = opts.maps ?? 'shared';
  const object = maps === 'per-CPU' ? percpuObject(opts.object) : opts.object;
  if (!(await exists(object))) throw new UserError(`the BPF object ${object} is missing: run 'npm run setup' (it builds bpf/)`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'maps'), { recursive: true });
  try {
    await run('bpftool', ['prog', 'loadall', object, join(dir, 'progs'), 'type', 'classifier', 'pinmaps', join(dir, 'maps')]);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw new UserError(
      `the kernel refused the BPF program (${(err as Error).message.split('\n')[0]}): ` +
        'it needs BPF, cls_bpf, map-in-map and per-CPU array support (Linux 5.6+; see dmesg and `virt-cohort doctor`); ' +
        'or count with libpcap on this host (agent.sensor: pcap), at a far higher CPU cost',
    );
  }
  log.info({ dir, maps }, 'loaded and pinned the counting programs');
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
