import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import bpf from 'bpf';
import { UserError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { logger } from '../util/log.js';
import { BPFFS, ensureBpffs } from './bpffs.js';
import { COUNTS, KEY, LAYOUT_VERSION, MAX_FLOWS, MAX_TAPS, STAT, TAP, decodeFlow, encodeTap, mergeFlows, u32, type FlowCounts } from './layout.js';
import { checkTapName, type Attachment, type Reading, type ReconcileResult, type Sensor } from './sensor.js';
import { clearOurFilters, ensureClsact, ourFilters, replaceFilters } from './tc.js';

const log = logger('sensor');

export interface EbpfOptions {
  /** Where maps and programs are pinned; the layout version is appended (…/v1). */
  pinRoot: string;
  /** Network namespace (/run/netns/NAME) the taps live in; the root namespace if absent. */
  netns?: string;
  /** The compiled counter.bpf.o. */
  object: string;
  /** Load and pin the programs when nothing is pinned yet (the agent); a viewer passes false. */
  load?: boolean;
}

const PROG_FROM_VM = 'vc_from_vm';
const PROG_TO_VM = 'vc_to_vm';
const BATCH = 8192;
const FULL_CHECK_MS = 600_000;

/**
 * The eBPF backend: one tc program pair shared by every tap of the host, maps
 * pinned under a versioned path so counts survive an agent restart.
 */
export class EbpfSensor implements Sensor {
  readonly kind = 'ebpf' as const;
  readonly capacity = MAX_FLOWS;
  /** tap → `ifindex/vm` this sensor attached or found attached: not re-read at every reconcile. */
  private verified = new Map<string, string>();
  private lastFullCheck = 0;

  private constructor(
    private readonly opts: EbpfOptions,
    private readonly dir: string,
    private readonly taps: bpf.RawMap,
    private readonly active: bpf.RawMap,
    private readonly counts: [bpf.RawMap, bpf.RawMap],
    private readonly countFds: [number, number],
    private readonly countIds: [number, number],
    private readonly stats: bpf.RawMap,
    private readonly reported: bpf.RawMap,
  ) {}

  static async open(opts: EbpfOptions): Promise<EbpfSensor> {
    const dir = join(opts.pinRoot, `v${LAYOUT_VERSION}`);
    await requireBpffs(opts.pinRoot);
    if (!(await exists(join(dir, 'progs', PROG_FROM_VM)))) {
      if (opts.load === false) throw new UserError(`no sensor is pinned at ${dir}: is the agent running on this host, and is this its pin root (agent.pinRoot)?`);
      await load(opts.object, dir);
    }
    const open = (name: string, keySize: number, valueSize: number, maxEntries?: number) => {
      const path = join(dir, 'maps', name);
      let fd: number;
      try {
        fd = bpf.objGet(path);
      } catch (err) {
        throw new UserError(`cannot open the pinned map ${path} (${(err as Error).message}): remove ${dir} and start again; it is recreated`);
      }
      const ref = bpf.createMapRef(fd, { transfer: true });
      if (ref.keySize !== keySize || ref.valueSize !== valueSize || (maxEntries !== undefined && ref.maxEntries !== maxEntries)) {
        throw new UserError(
          `the map pinned at ${path} has another layout (key ${ref.keySize} B, value ${ref.valueSize} B, ${ref.maxEntries} entries; ` +
            `this version expects ${keySize} B, ${valueSize} B${maxEntries !== undefined ? `, ${maxEntries}` : ''}): ` +
            `it was pinned by another build. Stop its agent, then remove ${dir}.`,
        );
      }
      return { map: new bpf.RawMap(ref), fd, id: ref.id ?? -1 };
    };
    const taps = open('vc_taps', 4, TAP.size, MAX_TAPS);
    const active = open('vc_active', 4, 4, 1);
    const c0 = open('vc_counts0', KEY.size, COUNTS.size, MAX_FLOWS);
    const c1 = open('vc_counts1', KEY.size, COUNTS.size, MAX_FLOWS);
    const stats = open('vc_stats', 4, 8, STAT.size);
    const reported = open('vc_reported', 4, 8, STAT.size);
    return new EbpfSensor(opts, dir, taps.map, active.map, [c0.map, c1.map], [c0.fd, c1.fd], [c0.id, c1.id], stats.map, reported.map);
  }

  get pinDir(): string {
    return this.dir;
  }

  async attach(tap: string, vm: number): Promise<void> {
    checkTapName(tap);
    if (!Number.isInteger(vm) || vm < 0 || vm > 0xffffffff) throw new UserError(`VM id must be a 32-bit unsigned integer (got ${vm})`);
    const ifindex = await this.ifindex(tap);
    if (ifindex === undefined) throw new UserError(`no interface '${tap}'${this.opts.netns ? ` in network namespace ${this.opts.netns}` : ''}: is the VM running?`);
    await this.attachAt(tap, ifindex, vm);
  }

  private async attachAt(tap: string, ifindex: number, vm: number): Promise<void> {
    // The VM id goes in first, so the first packet the filter sees is already counted against the VM.
    this.taps.set(u32(ifindex), encodeTap(vm));
    try {
      await ensureClsact(tap, this.opts.netns);
      await replaceFilters(tap, { ingress: join(this.dir, 'progs', PROG_FROM_VM), egress: join(this.dir, 'progs', PROG_TO_VM) }, this.opts.netns);
    } catch (err) {
      // Half attached would count one direction only: undo ours, leave theirs.
      await clearOurFilters(tap, this.opts.netns).catch(() => undefined);
      this.taps.delete(u32(ifindex));
      this.verified.delete(tap);
      throw err;
    }
    this.verified.set(tap, `${ifindex}/${vm}`);
    log.info({ tap, ifindex, vm }, 'attached');
  }

  async detach(tap: string): Promise<void> {
    checkTapName(tap);
    const ifindex = await this.ifindex(tap);
    this.verified.delete(tap);
    if (ifindex !== undefined) {
      await clearOurFilters(tap, this.opts.netns);
      this.taps.delete(u32(ifindex));
    }
    log.info({ tap, ifindex }, 'detached');
  }

  async attached(): Promise<Attachment[]> {
    const names = await this.linkNames();
    const out: Attachment[] = [];
    for (const [k, v] of this.taps.entries()) {
      const name = names.get(k.readUInt32LE(0));
      if (name) out.push({ tap: name, vm: v.readUInt32LE(TAP.vm) });
    }
    return out.sort((a, b) => a.tap.localeCompare(b.tap));
  }

  /**
   * Makes the kernel match `want`: attaches what is missing, removes our
   * filters from taps that are not wanted and forgets taps that are gone.
   * Filters of anyone else are never touched. A tap this sensor attached or
   * checked itself, with the same ifindex and VM, is taken as is (reading the
   * filters of 1,000 taps costs 2,000 tc runs); every FULL_CHECK_MS, or with
   * `full`, every tap's filters are read again (someone may have removed ours).
   */
  async reconcile(want: Attachment[], full = false): Promise<ReconcileResult> {
    if (Date.now() - this.lastFullCheck > FULL_CHECK_MS) full = true;
    if (full) {
      this.verified.clear();
      this.lastFullCheck = Date.now();
    }
    const names = await this.linkNames();
    const byName = new Map([...names].map(([i, n]) => [n, i]));
    const wanted = new Set(want.map((w) => w.tap));
    const attached: string[] = [];
    const removed: string[] = [];
    const failed: { tap: string; error: string }[] = [];
    for (const [k] of this.taps.entries()) {
      const ifindex = k.readUInt32LE(0);
      const name = names.get(ifindex);
      if (!name || !wanted.has(name)) {
        this.taps.delete(k);
        if (name) this.verified.delete(name);
        if (name) await clearOurFilters(name, this.opts.netns);
        removed.push(name ?? `ifindex ${ifindex}`);
      }
    }
    for (const w of want) {
      const ifindex = byName.get(w.tap);
      if (ifindex === undefined) continue;
      const current = this.taps.get(u32(ifindex));
      if (current?.readUInt32LE(TAP.vm) === w.vm && this.verified.get(w.tap) === `${ifindex}/${w.vm}`) continue;
      const filters = await ourFilters(w.tap, this.opts.netns);
      if (!current || current.readUInt32LE(TAP.vm) !== w.vm || filters.length < 2) {
        // One tap that cannot be attached must not stop the others from being counted.
        try {
          checkTapName(w.tap);
          await this.attachAt(w.tap, ifindex, w.vm);
          attached.push(w.tap);
        } catch (err) {
          failed.push({ tap: w.tap, error: (err as Error).message });
          log.error({ err, tap: w.tap }, 'cannot count this tap');
        }
      } else this.verified.set(w.tap, `${ifindex}/${w.vm}`);
    }
    return { attached, removed, failed };
  }

  async read(): Promise<Reading> {
    const activeId = this.active.get(u32(0))?.readUInt32LE(0);
    const cur = activeId === this.countIds[1] ? 1 : 0;
    const other = 1 - cur;
    // Left in the idle map by an agent that died between a swap and its drain.
    const leftovers = drain(this.counts[other]!);
    // Returns once no program can still write the map we are about to drain.
    this.active.set(u32(0), u32(this.countFds[other]!));
    const at = Date.now();
    const drained = drain(this.counts[cur]!);
    const flows = leftovers.length ? mergeFlows([...leftovers, ...drained]) : drained;
    // vc_stats only grows; vc_reported remembers what earlier reads returned.
    const stats = readU64s(this.stats);
    const before = readU64s(this.reported);
    const delta = stats.map((v, i) => Math.max(0, v - (before[i] ?? 0)));
    stats.forEach((v, i) => this.reported.set(u32(i), u64(v)));
    return {
      flows,
      overflow: { packets: delta[STAT.full] ?? 0, bytes: delta[STAT.fullBytes] ?? 0 },
      unknownTap: delta[STAT.unknownTap] ?? 0,
      at,
    };
  }

  /**
   * The counts of the period so far, without draining anything: for a person
   * watching (`virt-cohort top`) while the agent keeps reading the periods.
   * Both maps are summed, so a swap between two peeks is seen as a drop.
   */
  peek(): FlowCounts[] {
    const flows: FlowCounts[] = [];
    for (const map of this.counts) {
      for (const batch of map.getBatch(BATCH)) for (const [k, v] of batch) flows.push(decodeFlow(k, v));
    }
    return mergeFlows(flows);
  }

  async close(): Promise<void> {
    // Maps and programs stay pinned and attached: counting goes on while no agent runs.
  }

  private async linkNames(): Promise<Map<number, string>> {
    const out = await run('ip', ['-j', 'link', 'show'], this.opts.netns ? { netns: this.opts.netns } : {});
    const links = JSON.parse(out) as { ifindex: number; ifname: string }[];
    return new Map(links.map((l) => [l.ifindex, l.ifname]));
  }

  private async ifindex(tap: string): Promise<number | undefined> {
    for (const [i, n] of await this.linkNames()) if (n === tap) return i;
    return undefined;
  }
}

function readU64s(map: bpf.RawMap): number[] {
  const out: number[] = [];
  for (let i = 0; i < STAT.size; i++) out.push(Number(map.get(u32(i))?.readBigUInt64LE(0) ?? 0n));
  return out;
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

function drain(map: bpf.RawMap): FlowCounts[] {
  const flows: FlowCounts[] = [];
  const keys: Buffer[] = [];
  for (const batch of map.getBatch(BATCH)) {
    for (const [k, v] of batch) {
      flows.push(decodeFlow(k, v));
      keys.push(k);
    }
  }
  for (let i = 0; i < keys.length; i += BATCH) map.deleteBatch(keys.slice(i, i + BATCH));
  return flows;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** The pin root must sit on bpffs, which is mounted here if missing (the agent runs as root). */
async function requireBpffs(root: string): Promise<void> {
  if (!root.startsWith(`${BPFFS}/`)) throw new UserError(`the pin root must be under ${BPFFS} (got ${root}): set agent.pinRoot`);
  await ensureBpffs();
}

async function load(object: string, dir: string): Promise<void> {
  if (!(await exists(object))) throw new UserError(`the BPF object ${object} is missing: run 'npm run setup' (it builds bpf/)`);
  await mkdir(join(dir, 'maps'), { recursive: true });
  try {
    await run('bpftool', ['prog', 'loadall', object, join(dir, 'progs'), 'type', 'classifier', 'pinmaps', join(dir, 'maps')]);
  } catch (err) {
    throw new UserError(
      `the kernel refused the BPF program (${(err as Error).message.split('\n')[0]}): ` +
        'it needs BPF, cls_bpf and map-in-map support (Linux 5.6+; see dmesg and `virt-cohort doctor`); ' +
        'or count with libpcap on this host (agent.sensor: pcap), at a far higher CPU cost',
    );
  }
  log.info({ dir }, 'loaded and pinned the counting programs');
}
