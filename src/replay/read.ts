import { createReadStream } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip } from 'node:zlib';
import type { HostEntry, VmEntry } from '../collector/registry.js';
import type { MigrationRecord } from '../manager/history.js';
import { UserError } from '../util/errors.js';
import { periodLabel } from '../util/period.js';
import { TRACE_FORMAT, TRACE_VERSION, type EnvVersion, type Trace } from './trace.js';

/** A trace that cannot be read: the message names the file, the line and the period where it went wrong, and what to do. */
export class TraceError extends UserError {
  override name = 'TraceError';
}

type Obj = Record<string, unknown>;

/** Reads a trace written by `virt-cohort record` (any format version up to this one's). */
export async function readTrace(path: string): Promise<Trace> {
  const b = new Builder(path);
  await new Promise<void>((resolve, reject) => {
    const input = createReadStream(path);
    const gunzip = createGunzip();
    const decoder = new StringDecoder('utf8');
    let rest = '';
    const stop = (err: unknown) => {
      input.destroy();
      gunzip.destroy();
      reject(err instanceof TraceError ? err : b.streamFailed(err as NodeJS.ErrnoException));
    };
    input.on('error', stop);
    gunzip.on('error', stop);
    gunzip.on('data', (chunk: Buffer) => {
      try {
        const lines = (rest + decoder.write(chunk)).split('\n');
        rest = lines.pop()!;
        for (const l of lines) b.line(l);
      } catch (err) {
        stop(err);
      }
    });
    gunzip.on('end', () => {
      try {
        if (rest !== '') b.line(rest);
        resolve();
      } catch (err) {
        stop(err);
      }
    });
    input.pipe(gunzip);
  });
  return b.finish();
}

/** Builds a Trace line by line, checking each; `where` tells a person where a problem is. */
class Builder {
  private n = 0;
  private header?: Trace;
  private ended = false;
  constructor(readonly path: string) {}

  private where(): string {
    const last = this.header?.periods.at(-1);
    return `${this.path} line ${this.n}${last ? ` (after period ${periodLabel({ start: last.start, length: this.header!.periodSeconds })})` : ''}`;
  }

  private bad(what: string): TraceError {
    return new TraceError(`${this.where()}: ${what}: the trace is damaged; record it again (virt-cohort record)`);
  }

  streamFailed(err: NodeJS.ErrnoException): TraceError {
    if (err.code === 'ENOENT') return new TraceError(`cannot read trace ${this.path}: no such file; record one with virt-cohort record --out ${this.path}`);
    if (err.code === 'Z_BUF_ERROR' || /unexpected end/i.test(err.message)) {
      return new TraceError(`${this.where()}: the file ends in the middle of its compressed data: it is truncated (copied while being written, or a disk filled up); record it again`);
    }
    if (err.code === 'Z_DATA_ERROR') {
      return this.n === 0
        ? new TraceError(`${this.path} is not a virt-cohort trace (not gzip'd: ${err.message}): give a file written by virt-cohort record`)
        : this.bad(`its compressed data is corrupt (${err.message})`);
    }
    return new TraceError(`cannot read trace ${this.path}: ${err.message}`);
  }

  line(text: string): void {
    this.n++;
    if (this.ended) {
      if (text.trim() === '') return;
      throw this.bad('there is more after the end record');
    }
    let o: Obj;
    try {
      o = JSON.parse(text) as Obj;
    } catch (err) {
      throw this.bad(`not a JSON line (${(err as Error).message})`);
    }
    if (typeof o !== 'object' || o === null || Array.isArray(o) || typeof o.t !== 'string') throw this.bad('not a trace record (an object with "t")');
    if (!this.header) {
      this.first(o);
      return;
    }
    const tr = this.header;
    switch (o.t) {
      case 'env':
        tr.environments.push(this.env(o));
        return;
      case 'host':
        tr.hosts.push(this.fields<HostEntry>(o, ['host', 'site'], ['lastSeen', 'firstSeen']));
        return;
      case 'vm':
        tr.vms.push(this.fields<VmEntry>(o, ['name', 'host', 'state'], ['memoryKiB', 'vcpus']));
        return;
      case 'migration':
        tr.migrations.push(this.fields<MigrationRecord>(o, ['vm', 'from', 'to', 'outcome'], ['at', 'seconds']));
        return;
      case 'names':
        if (o.from !== tr.names.length || !Array.isArray(o.names) || o.names.some((x) => typeof x !== 'string')) {
          throw this.bad(`a names record must continue the list at ${tr.names.length} with strings`);
        }
        tr.names.push(...(o.names as string[]));
        return;
      case 'period':
        this.period(o);
        return;
      case 'end':
        if (o.periods !== tr.periods.length) throw this.bad(`the end record counts ${String(o.periods)} periods, the file holds ${tr.periods.length}`);
        this.ended = true;
        return;
      default:
        throw this.bad(`unknown record type '${o.t}'`);
    }
  }

  private first(o: Obj): void {
    if (o.t !== 'header' || o.format !== TRACE_FORMAT)
      throw new TraceError(`${this.path} is not a virt-cohort trace (its first line is not a ${TRACE_FORMAT} header): give a file written by virt-cohort record`);
    const v = o.version;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw this.bad(`the header's version is ${JSON.stringify(v)}`);
    if (v > TRACE_VERSION) {
      throw new TraceError(`${this.path} is a trace of format version ${v}, newer than this virt-cohort reads (up to ${TRACE_VERSION}): replay it with a newer virt-cohort`);
    }
    const L = o.periodSeconds;
    if (typeof L !== 'number' || !Number.isInteger(L) || L < 1) throw this.bad(`the header's periodSeconds is ${JSON.stringify(L)}`);
    this.header = {
      version: v,
      recordedAt: Number(o.recordedAt) || 0,
      source: String(o.source ?? ''),
      periodSeconds: L,
      names: [],
      periods: [],
      hosts: [],
      vms: [],
      environments: [],
      migrations: [],
    };
  }

  private fields<T>(o: Obj, strings: string[], numbers: string[]): T {
    for (const k of strings) if (typeof o[k] !== 'string') throw this.bad(`a ${String(o.t)} record lacks its ${k}`);
    for (const k of numbers) if (typeof o[k] !== 'number' || !Number.isFinite(o[k])) throw this.bad(`a ${String(o.t)} record lacks its ${k} (a number)`);
    const { t: _, ...rest } = o;
    return rest as T;
  }

  private env(o: Obj): EnvVersion {
    if (typeof o.at !== 'number' || (o.file !== null && (typeof o.file !== 'object' || Array.isArray(o.file))) || typeof o.defaults !== 'object' || o.defaults === null) {
      throw this.bad('an env record needs at (ms), file (an environment object or null) and defaults');
    }
    const last = this.header!.environments.at(-1);
    if (last && o.at <= last.at) throw this.bad('environment versions must come oldest first');
    return { at: o.at, file: o.file as object | null, defaults: o.defaults as EnvVersion['defaults'], source: String(o.source ?? ''), ...(typeof o.version === 'number' && { version: o.version }) };
  }

  private period(o: Obj): void {
    const tr = this.header!;
    const p = o.p;
    if (typeof p !== 'number' || !Number.isInteger(p) || p % tr.periodSeconds !== 0) throw this.bad(`a period's start must be a whole multiple of ${tr.periodSeconds} s, got ${JSON.stringify(p)}`);
    const last = tr.periods.at(-1);
    if (last && p <= last.start) throw this.bad(`period ${periodLabel({ start: p, length: tr.periodSeconds })} comes after a later one`);
    const { s, d, m, b } = o;
    if (![s, d, m, b].every(Array.isArray) || new Set([s, d, m, b].map((x) => (x as unknown[]).length)).size !== 1) {
      throw this.bad(`period ${periodLabel({ start: p, length: tr.periodSeconds })}: s, d, m and b must be lists of one length`);
    }
    const n = (s as unknown[]).length;
    const src = new Int32Array(n);
    const dst = new Int32Array(n);
    const messages = new Float64Array(n);
    const bytes = new Float64Array(n);
    const names = tr.names.length;
    for (let i = 0; i < n; i++) {
      const a = (s as number[])[i]!;
      const z = (d as number[])[i]!;
      const mm = (m as number[])[i]!;
      const bb = (b as number[])[i]!;
      if (!(Number.isInteger(a) && a >= 0 && a < names && Number.isInteger(z) && z >= 0 && z < names)) {
        throw this.bad(`period ${periodLabel({ start: p, length: tr.periodSeconds })}: pair ${i} names an endpoint not listed before it`);
      }
      if (!(mm >= 0 && bb >= 0 && Number.isFinite(mm) && Number.isFinite(bb)))
        throw this.bad(`period ${periodLabel({ start: p, length: tr.periodSeconds })}: pair ${i} has a negative or missing count`);
      src[i] = a;
      dst[i] = z;
      messages[i] = mm;
      bytes[i] = bb;
    }
    const list = (x: unknown) => (Array.isArray(x) ? x.map(String) : []);
    tr.periods.push({ start: p, src, dst, messages, bytes, reported: list(o.h), estimated: list(o.e) });
  }

  finish(): Trace {
    if (!this.header) throw new TraceError(`${this.path} is empty: give a file written by virt-cohort record`);
    if (!this.ended) {
      throw new TraceError(`${this.where()}: the trace stops without its end record: it is truncated (copied while being written, or the recorder was stopped); record it again`);
    }
    if (!this.header.environments.length) throw new TraceError(`${this.path} holds no environment: record it again (virt-cohort record)`);
    return this.header;
  }
}
