import { readFile, rename } from 'node:fs/promises';
import { writeDurable } from '../util/files.js';
import { logger } from '../util/log.js';

const log = logger('vmids');

interface Entry {
  name: string;
  uuid: string;
  lastSeen: number;
}

/** How long the id of a VM that left stays known: its last counts may still sit in the maps. */
const KEEP_MS = 3600_000;

/**
 * The sensor counts per 32-bit VM id; this table turns ids back into VMs. An
 * id is the first 32 bits of the domain UUID (stable across agent restarts and
 * hosts), moved on in the rare collision. Saved to disk so counts pinned in the
 * kernel by a previous agent are still attributed after a restart.
 */
export class VmIds {
  private dirty = false;

  private constructor(
    private readonly file: string,
    private readonly byId: Map<number, Entry>,
  ) {}

  static async load(file: string): Promise<VmIds> {
    const byId = new Map<number, Entry>();
    try {
      const saved = JSON.parse(await readFile(file, 'utf8')) as Record<string, Entry>;
      for (const [id, e] of Object.entries(saved)) byId.set(Number(id), e);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        // Set aside, and rebuilt from libvirt at the first reconcile: the agent starts.
        await rename(file, `${file}.bad`).catch(() => undefined);
        log.error({ err, file: `${file}.bad` }, 'unreadable VM id table set aside and rebuilt from libvirt; counts still in the kernel from before may show as vm#ID');
        byId.clear();
      }
    }
    return new VmIds(file, byId);
  }

  idFor(uuid: string, name: string, now = Date.now()): number {
    for (const [id, e] of this.byId) {
      if (e.uuid === uuid) {
        if (e.name !== name || now - e.lastSeen > 60_000) this.dirty = true;
        e.name = name;
        e.lastSeen = now;
        return id;
      }
    }
    let id = Number.parseInt(uuid.replace(/-/g, '').slice(0, 8), 16) >>> 0;
    while (this.byId.has(id)) id = (id + 1) >>> 0;
    this.byId.set(id, { name, uuid, lastSeen: now });
    this.dirty = true;
    return id;
  }

  name(id: number): string {
    return this.byId.get(id)?.name ?? `vm#${id}`;
  }

  async save(now = Date.now()): Promise<void> {
    for (const [id, e] of this.byId) {
      if (now - e.lastSeen > KEEP_MS) {
        this.byId.delete(id);
        this.dirty = true;
      }
    }
    if (!this.dirty) return;
    await writeDurable(this.file, JSON.stringify(Object.fromEntries(this.byId)));
    this.dirty = false;
  }
}
