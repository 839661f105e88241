import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import bpf from 'bpf';

type LookupAndDeleteBatch = (fd: number, inBatch: Buffer | undefined, outBatch: Buffer, keys: Buffer, values: Buffer, count: number, opts: object) => [number, number];
/**
 * node_bpf's own binding of bpf_map_lookup_and_delete_batch, which its RawMap
 * does not expose: RawMap.getBatch copies every key and value into a Buffer of
 * its own and the keys must then be deleted in a second pass, two thirds of
 * the time of a read of 100,000 flows (measured: getBatch 170 ms, deleteBatch
 * 45 ms, decoding 35 ms; this, decoding included, 80-150 ms). Absent in
 * another build of node_bpf: the read falls back to getBatch and deleteBatch.
 */
const native = (createRequire(import.meta.url)('bpf/dist/util.js') as { native?: { mapLookupAndDeleteBatch?: LookupAndDeleteBatch } }).native;

// Per-CPU map values as node_bpf sees them. No logger here: the benches load
// this before they set the log level.

/**
 * A flow map whose values are `stride` bytes: one struct vc_counts per
 * possible CPU for a per-CPU map (the kernel copies them all; node_bpf sizes
 * its buffers by valueSize). A plain view, since the native ref's getters
 * cannot be re-bound; it holds the ref, so the fd stays open.
 */
export function flowMapView(ref: bpf.MapRef, stride: number): bpf.RawMap {
  return new bpf.RawMap({
    fd: ref.fd,
    id: ref.id,
    type: ref.type,
    keySize: ref.keySize,
    valueSize: stride,
    maxEntries: ref.maxEntries,
    flags: ref.flags,
    ref,
    close: () => ref.close(),
  } as unknown as bpf.MapRef);
}

/** The kernel's count of possible CPUs (/sys/devices/system/cpu/possible, e.g. "0-63"): per-CPU values hold one copy each. */
export async function possibleCpus(): Promise<number> {
  const text = (await readFile('/sys/devices/system/cpu/possible', 'utf8')).trim();
  let n = 0;
  for (const part of text.split(',')) {
    const [a, b] = part.split('-').map(Number);
    n += b === undefined ? 1 : b - a! + 1;
  }
  if (!Number.isInteger(n) || n < 1) throw new Error(`cannot read the possible CPUs from /sys/devices/system/cpu/possible ('${text}')`);
  return n;
}

/**
 * Empties `map`, handing each entry to `each` as views into a reused buffer
 * (decode them, never keep them): one lookup-and-delete batch per `batch` entries.
 */
export function drainMap(map: bpf.RawMap, batch: number, each: (key: Buffer, value: Buffer) => void): void {
  const { keySize, valueSize, fd } = map.ref;
  const lookupAndDelete = native?.mapLookupAndDeleteBatch;
  if (!lookupAndDelete) {
    const keys: Buffer[] = [];
    for (const entries of map.getBatch(batch)) {
      for (const [k, v] of entries) {
        each(k, v);
        keys.push(k);
      }
    }
    for (let i = 0; i < keys.length; i += batch) map.deleteBatch(keys.slice(i, i + batch));
    return;
  }
  const keys = Buffer.alloc(batch * keySize);
  const values = Buffer.alloc(batch * valueSize);
  let inBatch: Buffer | undefined;
  let outBatch: Buffer = Buffer.alloc(Math.max(8, keySize));
  for (;;) {
    const [status, count] = lookupAndDelete(fd, inBatch, outBatch, keys, values, batch, {});
    // ENOENT: the map is done; `count` holds the last entries.
    if (status < 0 && status !== -constants.errno.ENOENT) throw new Error(`bpf_map_lookup_and_delete_batch failed: ${status} (errno ${-status})`);
    for (let i = 0; i < count; i++) each(keys.subarray(i * keySize, (i + 1) * keySize), values.subarray(i * valueSize, (i + 1) * valueSize));
    if (status < 0) return;
    [inBatch, outBatch] = [outBatch, inBatch ?? Buffer.alloc(Math.max(8, keySize))];
  }
}
