import { randomBytes } from 'node:crypto';
import { endianness } from 'node:os';

/**
 * One host's pairs for one period, as stored in `vc:period:{P}:host:H:pairs`:
 * a little-endian string of
 *
 *   u32 version (1) | u32 n | 8 bytes dictionary epoch | f64 messages[n] | f64 bytes[n] | u32 id[n]
 *
 * where an id is the pair member's number in the cluster's pair dictionary
 * (`vc:{vc}:pair:names`). The f64 columns start at 16 and 16 + 8n, so a copy of the
 * string aligned on 8 bytes is read as typed arrays without any per-pair
 * parsing. The epoch names the dictionary the ids belong to: a blob written
 * against a dictionary that was since deleted is refused, not misnamed.
 * 20 bytes a pair: 500k pairs are 10 MB.
 */
export interface Packed {
  epoch: string;
  ids: Uint32Array;
  msgs: Float64Array;
  bytes: Float64Array;
}

const VERSION = 1;
const HEADER = 16;
const LE = endianness() === 'LE';

/** A new dictionary epoch: 16 hex digits (8 bytes in a blob's header). */
export function newEpoch(): string {
  return randomBytes(8).toString('hex');
}

export function encodePacked(epoch: string, ids: ArrayLike<number>, pairs: readonly (readonly [string, number, number])[]): Buffer {
  const n = pairs.length;
  const buf = Buffer.allocUnsafeSlow(HEADER + 20 * n); // its own ArrayBuffer: offset 0, aligned
  buf.writeUInt32LE(VERSION, 0);
  buf.writeUInt32LE(n, 4);
  buf.write(epoch, 8, 8, 'hex');
  if (LE) {
    const msgs = new Float64Array(buf.buffer, buf.byteOffset + HEADER, n);
    const bytes = new Float64Array(buf.buffer, buf.byteOffset + HEADER + 8 * n, n);
    const idv = new Uint32Array(buf.buffer, buf.byteOffset + HEADER + 16 * n, n);
    for (let i = 0; i < n; i++) {
      const p = pairs[i]!;
      msgs[i] = p[1];
      bytes[i] = p[2];
      idv[i] = ids[i]!;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const p = pairs[i]!;
      buf.writeDoubleLE(p[1], HEADER + 8 * i);
      buf.writeDoubleLE(p[2], HEADER + 8 * (n + i));
      buf.writeUInt32LE(ids[i]!, HEADER + 16 * n + 4 * i);
    }
  }
  return buf;
}

/** Reads a blob back; `where` names it in the error when it is not one. */
export function decodePacked(buf: Buffer, where: string): Packed {
  const n = buf.length >= HEADER ? buf.readUInt32LE(4) : -1;
  if (n < 0 || buf.readUInt32LE(0) !== VERSION || buf.length !== HEADER + 20 * n) {
    throw new Error(`${where} is not a version-${VERSION} packed pair list (${buf.length} bytes)`);
  }
  const epoch = buf.toString('hex', 8, 16);
  if (!LE) {
    const msgs = new Float64Array(n),
      bytes = new Float64Array(n),
      ids = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      msgs[i] = buf.readDoubleLE(HEADER + 8 * i);
      bytes[i] = buf.readDoubleLE(HEADER + 8 * (n + i));
      ids[i] = buf.readUInt32LE(HEADER + 16 * n + 4 * i);
    }
    return { epoch, ids, msgs, bytes };
  }
  let b = buf;
  if (b.byteOffset % 8 !== 0) {
    // a slice of ioredis's reply buffer: copy to an aligned one (a memcpy)
    b = Buffer.allocUnsafeSlow(buf.length);
    buf.copy(b);
  }
  return {
    epoch,
    msgs: new Float64Array(b.buffer, b.byteOffset + HEADER, n),
    bytes: new Float64Array(b.buffer, b.byteOffset + HEADER + 8 * n, n),
    ids: new Uint32Array(b.buffer, b.byteOffset + HEADER + 16 * n, n),
  };
}
