import { join } from 'node:path';
import bpf from 'bpf';
import { UserError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { logger } from '../util/log.js';
import { CACHED, CACHE_ENTRIES, COUNTS, KEY, LAYOUT_VERSION, MAX_FLOWS, MAX_TAPS, SLOT, STAT, decodeCached, decodeFlow, encodeSlot, flowId, mergeFlows, u32, type FlowCounts } from './layout.js';
import { drainMap, flowMapView, possibleCpus } from './maps.js';
import { type EbpfOptions, type FlowMaps, exists, load, requireBpffs } from './pins.js';
import { checkTapName, type Attachment, type Reading, type ReconcileResult, type Sensor } from './sensor.js';
import { ATTACH_PATH, apply, attachLines, attachedWith, clearOurFilters, foreignFilter, showTaps, type TapState } from './tc.js';

const log = logger('sensor');
export type { EbpfOptions, FlowMaps };

const PROG_FROM_VM = 'vc_from_vm';
const PROG_TO_VM = 'vc_to_vm';
const BATCH = 8192;
const FULL_CHECK_MS = 600_000;

/**
 * The eBPF backend: one tc program pair shared by every tap of the host, maps
 * pinned under a versioned path so counts survive an agent restart. Each tap
 * has a slot in vc_slots (its VM and ifindex); the slot is the classid of the
 * tap's filters.
 */
export class EbpfSensor implements Sensor {
  readonly kind = 'ebpf' as const;
  readonly capacity = MAX_FLOWS;
  readonly attachPath = ATTACH_PATH;
  /** tap → `ifindex/slot` this sensor attached or found attached: not re-read at every reconcile. */
  private verified = new Map<string, string>();
  private lastFullCheck = 0;

  private constructor(
    private readonly opts: EbpfOptions,
    private readonly dir: string,
    private readonly slots: bpf.RawMap,
    private readonly gen: bpf.RawMap,
    private readonly active: bpf.RawMap,
    private readonly counts: [bpf.RawMap, bpf.RawMap],
    private readonly countFds: [number, number],
    /** vc_cache, seen with one struct vc_cached per possible CPU per entry. */
    private readonly cache: bpf.RawMap,
    private readonly cacheStride: number,
    private readonly stats: bpf.RawMap,
    private readonly reported: bpf.RawMap,
    /** Which flow maps are pinned: what the kernel took. */
    readonly maps: FlowMaps,
  ) {}

  static async open(opts: EbpfOptions): Promise<EbpfSensor> {
    const dir = join(opts.pinRoot, `v${LAYOUT_VERSION}`);
    await requireBpffs(opts.pinRoot);
    if (!(await exists(join(dir, 'progs', PROG_FROM_VM)))) {
      if (opts.load === false) throw new UserError(`no sensor is pinned at ${dir}: is the agent running on this host, and is this its pin root (agent.pinRoot)?`);
      await load(opts, dir);
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
      return { map: new bpf.RawMap(ref), ref, fd, id: ref.id ?? -1 };
    };
    const slots = open('vc_slots', 4, SLOT.size, MAX_TAPS);
    const gen = open('vc_gen', 4, 4, 1);
    const active = open('vc_active', 4, 4, 2);
    const cache = open('vc_cache', 4, CACHED.size, CACHE_ENTRIES);
    const c0 = open('vc_counts0', KEY.size, COUNTS.size, MAX_FLOWS);
    const c1 = open('vc_counts1', KEY.size, COUNTS.size, MAX_FLOWS);
    const stats = open('vc_stats', 4, 8, STAT.size);
    const reported = open('vc_reported', 4, 8, STAT.size);
    const maps: FlowMaps = c0.ref.type === bpf.MapType.PERCPU_HASH ? 'per-CPU' : 'shared';
    // The kernel returns a per-CPU value as one struct per possible CPU; node_bpf sizes its buffers by valueSize.
    const stride = maps === 'per-CPU' ? COUNTS.size * (await possibleCpus()) : COUNTS.size;
    const countMap = ({ ref }: typeof c0) => flowMapView(ref, stride);
    // vc_cache is per-CPU in both builds (a per-CPU array, not a hash).
    const cacheStride = CACHED.size * (await possibleCpus());
    const sensor = new EbpfSensor(
      opts,
      dir,
      slots.map,
      gen.map,
      active.map,
      [countMap(c0), countMap(c1)],
      [c0.fd, c1.fd],
      flowMapView(cache.ref, cacheStride),
      cacheStride,
      stats.map,
      reported.map,
      maps,
    );
    log.info({ dir, maps, attach: ATTACH_PATH }, `sensor maps: ${sensor.describe()}`);
    return sensor;
  }

  get pinDir(): string {
    return this.dir;
  }

  /** Which paths are in use, for people: flow maps and how filters are attached. */
  describe(): string {
    return `${this.maps} flow maps behind a per-CPU last-flow cache, filters attached with ${ATTACH_PATH}`;
  }

  async attach(tap: string, vm: number): Promise<void> {
    checkTapName(tap);
    if (!Number.isInteger(vm) || vm < 0 || vm > 0xffffffff) throw new UserError(`VM id must be a 32-bit unsigned integer (got ${vm})`);
    const { failed } = await this.attachMany([{ tap, vm }], await this.linkNames());
    if (failed.length) throw new UserError(failed[0]!.error);
  }

  /**
   * Attaches every tap in one tc process: a slot each (the VM goes in first,
   * so the first packet the filter sees is already counted against the VM),
   * then our filters. A tap that fails, or vanishes meanwhile, is named in
   * `failed` and left with none of our filters; the others are attached.
   */
  private async attachMany(want: Attachment[], names: Map<number, string>, known?: Map<string, TapState>): Promise<{ attached: string[]; failed: { tap: string; error: string }[] }> {
    const byName = new Map([...names].map(([i, n]) => [n, i]));
    const slots = this.readSlots();
    const free = freeSlots(slots);
    const failed: { tap: string; error: string }[] = [];
    const placed: { tap: string; ifindex: number; slot: number }[] = [];
    for (const w of want) {
      const ifindex = byName.get(w.tap);
      const slot = ifindex === undefined ? undefined : (slots.get(ifindex)?.slot ?? free.shift());
      if (ifindex === undefined) failed.push({ tap: w.tap, error: this.missing(w.tap) });
      else if (slot === undefined) failed.push({ tap: w.tap, error: `all ${MAX_TAPS - 1} tap slots of the sensor are in use: no more taps can be counted on this host` });
      else {
        this.slots.set(u32(slot), encodeSlot(w.vm, ifindex));
        placed.push({ tap: w.tap, ifindex, slot });
      }
    }
    const states =
      known ??
      (await showTaps(
        placed.map((p) => p.tap),
        this.opts.netns,
      ));
    const progs = { ingress: join(this.dir, 'progs', PROG_FROM_VM), egress: join(this.dir, 'progs', PROG_TO_VM) };
    const refused = new Map<string, string>();
    const lines = placed.flatMap((p) => {
      const state = states.get(p.tap) ?? { error: this.missing(p.tap) };
      const why = 'error' in state ? this.gone(p.tap, state.error) : foreignFilter(p.tap, state)?.message;
      if (why) refused.set(p.tap, why);
      return why ? [] : attachLines(p.tap, state, progs, p.slot);
    });
    const errors = await apply(lines, this.opts.netns);
    const bad = new Map([...refused, ...[...errors].map(([tap, e]) => [tap, this.gone(tap, e)] as const)]);
    const attached: string[] = [];
    for (const p of placed) {
      const error = bad.get(p.tap);
      if (error === undefined) {
        this.verified.set(p.tap, `${p.ifindex}/${p.slot}`);
        attached.push(p.tap);
      } else failed.push({ tap: p.tap, error });
    }
    // Half attached would count one direction only: undo ours, leave theirs.
    const undo = placed.filter((p) => bad.has(p.tap));
    if (undo.length) {
      await clearOurFilters(
        undo.map((p) => p.tap),
        this.opts.netns,
      );
      for (const p of undo) {
        this.slots.set(u32(p.slot), encodeSlot(0, 0));
        this.verified.delete(p.tap);
      }
    }
    for (const f of failed) log.error({ tap: f.tap, error: f.error }, 'cannot count this tap');
    if (attached.length) log.info({ taps: attached.length, first: attached[0] }, 'attached');
    return { attached, failed };
  }

  async detach(tap: string): Promise<void> {
    checkTapName(tap);
    const ifindex = await this.ifindex(tap);
    this.verified.delete(tap);
    if (ifindex !== undefined) {
      await clearOurFilters([tap], this.opts.netns);
      const slot = this.readSlots().get(ifindex)?.slot;
      if (slot !== undefined) this.slots.set(u32(slot), encodeSlot(0, 0));
    }
    log.info({ tap, ifindex }, 'detached');
  }

  async attached(): Promise<Attachment[]> {
    const names = await this.linkNames();
    const out: Attachment[] = [];
    for (const [ifindex, s] of this.readSlots()) {
      const name = names.get(ifindex);
      if (name) out.push({ tap: name, vm: s.vm });
    }
    return out.sort((a, b) => a.tap.localeCompare(b.tap));
  }

  /**
   * Makes the kernel match `want`: attaches what is missing, removes our
   * filters from taps that are not wanted and forgets taps that are gone.
   * Filters of anyone else are never touched. A tap this sensor attached or
   * checked itself, with the same ifindex and slot, is taken as is; a new VM
   * for it is only a new slot value. Every FULL_CHECK_MS, or with `full`,
   * every tap's filters are read again (someone may have removed ours): one
   * tc process for all taps.
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
    const slots = this.readSlots();
    const removed: string[] = [];
    const failed: { tap: string; error: string }[] = [];
    const gone = [...slots].filter(([ifindex]) => !wanted.has(names.get(ifindex) ?? ''));
    // Filters first, then the slot: a packet in between would find no VM.
    await clearOurFilters(
      gone.map(([i]) => names.get(i)).filter((n): n is string => n !== undefined),
      this.opts.netns,
    );
    for (const [ifindex, s] of gone) {
      const name = names.get(ifindex);
      this.slots.set(u32(s.slot), encodeSlot(0, 0));
      if (name) this.verified.delete(name);
      removed.push(name ?? `ifindex ${ifindex}`);
    }
    const attached: string[] = [];
    const check: Attachment[] = [];
    for (const w of want) {
      const ifindex = byName.get(w.tap);
      if (ifindex === undefined) continue;
      try {
        checkTapName(w.tap);
      } catch (err) {
        failed.push({ tap: w.tap, error: (err as Error).message });
        continue;
      }
      const s = slots.get(ifindex);
      if (s && this.verified.get(w.tap) === `${ifindex}/${s.slot}`) {
        if (s.vm !== w.vm) {
          this.slots.set(u32(s.slot), encodeSlot(w.vm, ifindex));
          attached.push(w.tap);
        }
      } else check.push(w);
    }
    const states = await showTaps(
      check.map((w) => w.tap),
      this.opts.netns,
    );
    const redo = check.filter((w) => {
      const ifindex = byName.get(w.tap)!;
      const s = slots.get(ifindex);
      if (s && s.vm === w.vm && attachedWith(states.get(w.tap)!, s.slot)) {
        this.verified.set(w.tap, `${ifindex}/${s.slot}`);
        return false;
      }
      return true;
    });
    // One tap that cannot be attached must not stop the others from being counted.
    const r = await this.attachMany(redo, names, states);
    return { attached: [...attached, ...r.attached], removed, failed: [...failed, ...r.failed] };
  }

  /** vc_slots as ifindex → slot and VM, for the slots in use. */
  private readSlots(): Map<number, { slot: number; vm: number }> {
    const out = new Map<number, { slot: number; vm: number }>();
    for (const batch of this.slots.getBatch(MAX_TAPS)) {
      for (const [k, v] of batch) {
        const ifindex = v.readUInt32LE(SLOT.ifindex);
        if (ifindex) out.set(ifindex, { slot: k.readUInt32LE(0), vm: v.readUInt32LE(SLOT.vm) });
      }
    }
    return out;
  }

  /** What tc said about `tap`, or that it is gone when tc could not find it. */
  private gone(tap: string, tcSaid: string): string {
    return /Cannot find device/.test(tcSaid) ? this.missing(tap) : tcSaid;
  }

  private missing(tap: string): string {
    return `no interface '${tap}'${this.opts.netns ? ` in network namespace ${this.opts.netns}` : ''}: is the VM running? (it may have vanished while being attached)`;
  }

  async read(): Promise<Reading> {
    const cur = (this.gen.get(u32(0))?.readUInt32LE(0) ?? 0) & 1;
    const other = 1 - cur;
    // Left in the idle generation by an agent that died between a flip and its drain.
    const leftovers = this.drainGeneration(other);
    // The flip, of the flow map and the cache entries at once: the programs read vc_gen once per packet.
    this.gen.set(u32(0), u32(other));
    // Writing vc_active[cur] with the map it already holds changes nothing the
    // programs see, but an update of a map-in-map returns only after an RCU
    // grace period: once no program that read the old generation still runs.
    this.active.set(u32(cur), u32(this.countFds[cur]!));
    const at = Date.now();
    const drained = this.drainGeneration(cur);
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

  /** Empties generation `g`: its flow map, then every CPU's last flows in its cache entries (a flow can be in both). */
  private drainGeneration(g: number): FlowCounts[] {
    const flows = drain(this.counts[g]!);
    const cached: FlowCounts[] = [];
    for (const dir of [0, 1]) {
      const at = u32(2 * g + dir);
      const value = this.cache.get(at);
      const entries = value ? decodeCached(value) : [];
      if (!entries.length) continue;
      cached.push(...entries);
      this.cache.set(at, Buffer.alloc(this.cacheStride));
    }
    return addFew(flows, cached);
  }

  /**
   * The counts of the period so far, without draining anything: for a person
   * watching (`virt-cohort top`) while the agent keeps reading the periods.
   * Both generations are summed, so a flip between two peeks is seen as a drop.
   */
  peek(): FlowCounts[] {
    const flows: FlowCounts[] = [];
    for (const map of this.counts) {
      for (const batch of map.getBatch(BATCH)) for (const [k, v] of batch) flows.push(decodeFlow(k, v));
    }
    for (let i = 0; i < CACHE_ENTRIES; i++) {
      const value = this.cache.get(u32(i));
      if (value) flows.push(...decodeCached(value));
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
  drainMap(map, BATCH, (k, v) => flows.push(decodeFlow(k, v)));
  return flows;
}

/**
 * `flows` (one entry per flow, up to a whole period's) with `few` more added
 * in (a couple per CPU, maybe of flows already in `flows`): the same as
 * mergeFlows of both, without a key string for every flow, only for those of
 * the VMs that `few` name.
 */
function addFew(flows: FlowCounts[], few: FlowCounts[]): FlowCounts[] {
  if (!few.length) return flows;
  const extra = mergeFlows(few);
  const vms = new Set(extra.map((f) => f.vm));
  const byKey = new Map(extra.map((f) => [flowId(f), f]));
  for (const f of flows) {
    if (!vms.has(f.vm)) continue;
    const e = byKey.get(flowId(f));
    if (!e) continue;
    f.packets += e.packets;
    f.bytes += e.bytes;
    byKey.delete(flowId(f));
  }
  return byKey.size ? [...flows, ...byKey.values()] : flows;
}

/** Slots not in use, lowest first; slot 0 is never handed out (a filter without classid reads 0). */
function freeSlots(used: Map<number, { slot: number }>): number[] {
  const taken = new Set([...used.values()].map((s) => s.slot));
  const free: number[] = [];
  for (let i = 1; i < MAX_TAPS; i++) if (!taken.has(i)) free.push(i);
  return free;
}
