import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { parseReport, type Report } from '../collector/report.js';
import { logger } from '../util/log.js';

const log = logger('spool');

/**
 * Reports on local disk, in period order, until Redis has them. Every report
 * goes through here (written and fsynced before it is sent), so an agent
 * killed at any point finds on restart what it had not sent yet. Bounded:
 * beyond `max` files the oldest is dropped and the loss is logged and counted.
 */
export class Spool {
  dropped = 0;

  private constructor(
    private readonly dir: string,
    private readonly max: number,
  ) {}

  static async open(dir: string, max: number): Promise<Spool> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return new Spool(dir, max);
  }

  private static file(r: Pick<Report, 'period' | 'host'>): string {
    // Zero-padded period first: the directory's sort order is the send order.
    return `${String(r.period).padStart(12, '0')}-${r.host}.json`;
  }

  async put(r: Report): Promise<void> {
    const name = Spool.file(r);
    const tmp = join(this.dir, `.${name}.tmp`);
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify(r));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(this.dir, name));
    const names = await this.names();
    for (const old of names.slice(0, Math.max(0, names.length - this.max))) {
      await unlink(join(this.dir, old));
      this.dropped++;
      log.error({ file: old, max: this.max }, 'spool full: dropped the oldest report (Redis unreachable too long; raise spoolMax to keep more)');
    }
  }

  async names(): Promise<string[]> {
    return (await readdir(this.dir)).filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort();
  }

  async size(): Promise<number> {
    return (await this.names()).length;
  }

  /**
   * Sends every spooled report, oldest first, then, once `durable` resolved
   * (the writes are on a replica: src/agent/agent.ts; it is told the periods
   * written), removes those sent.
   * Stops sending at the first failure (Redis down): order is kept. When
   * `durable` throws, every report is kept, to be sent again (each is applied
   * once). Returns how many were sent and removed.
   */
  async flush(send: (r: Report) => Promise<void>, durable: (periods: number[]) => Promise<void> = async () => undefined): Promise<number> {
    const sent: string[] = [];
    const periods = new Set<number>();
    let failure: unknown;
    for (const name of await this.names()) {
      const path = join(this.dir, name);
      let r: Report;
      try {
        r = parseReport(await readFile(path, 'utf8'), path);
      } catch (err) {
        const bad = join(this.dir, `${name}.bad`);
        await rename(path, bad);
        log.error({ err, file: bad }, 'unreadable spooled report set aside');
        continue;
      }
      try {
        await send(r);
      } catch (err) {
        failure = err;
        break;
      }
      sent.push(path);
      periods.add(r.period);
    }
    if (sent.length) {
      await durable([...periods]);
      for (const path of sent) await unlink(path);
    }
    if (failure) throw failure;
    return sent.length;
  }
}
