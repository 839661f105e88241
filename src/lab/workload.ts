import { readFile } from 'node:fs/promises';
import { sleep } from '../util/exec.js';
import { requireLab } from './lab.js';
import { consoleLog } from './state.js';
import { spreadHost } from './topology.js';
import { addVm, type AddedVm } from './vm.js';

/** One report line of the stencil: iteration, time per iteration over the last report's span, and when the lab read it. */
export interface MpiReport {
  iter: number;
  msPerIter: number;
  at: number;
}

/**
 * An MPI job on Debian guests vm1..vmN spread over the sites in turn (vm1 on
 * a1, vm2 on b1, ...), so that every rank's neighbours start on the other
 * site. The ranks are added first; vm1 launches the job once they answer ssh.
 */
export async function startMpiJob(labName: string, o: { ranks: number; iters: number; haloBytes: number; memoryMiB: number }, added: (vm: AddedVm) => void): Promise<MpiWatch> {
  const lab = await requireLab(labName);
  const names = Array.from({ length: o.ranks }, (_, i) => `vm${i + 1}`);
  for (const i of [...names.keys()].slice(1).concat(0)) {
    const vm = await addVm(labName, {
      name: names[i]!,
      host: spreadHost(lab, i + 1).name,
      index: i + 1,
      pattern: 'idle',
      cluster: o.ranks,
      rate: 0,
      size: 256,
      memoryMiB: o.memoryMiB,
      wait: true,
      image: 'debian',
      ...(i === 0 ? { workload: { kind: 'mpi' as const, ranks: names.slice(1), iters: o.iters, haloBytes: o.haloBytes } } : {}),
    });
    added(vm);
  }
  const watch = new MpiWatch(consoleLog(labName, names[0]!));
  watch.follow();
  return watch;
}

/**
 * Follows the launcher's console (one file for every host, so it survives the
 * migrations): the stencil's reports, and how the job ended. The time of a
 * report is when the lab read it, at most `everyMs` late.
 */
export class MpiWatch {
  readonly reports: MpiReport[] = [];
  /** 'verified', or what went wrong (the stencil's FAILED line, mpirun's exit status, a guest error). */
  end?: { ok: boolean; line: string };
  private read = 0;
  private timer?: NodeJS.Timeout;

  constructor(
    readonly console: string,
    private readonly everyMs = 500,
  ) {}

  /** Reads the console every `everyMs` until stop(), so each report's time is when it was printed (within everyMs). */
  follow(): void {
    this.timer ??= setInterval(() => void this.poll(), this.everyMs).unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  async poll(): Promise<void> {
    const text = await readFile(this.console, 'utf8').catch(() => '');
    // Two polls at once (the timer's and a caller's) must not read a line twice.
    if (text.length <= this.read) return;
    const fresh = text.slice(this.read);
    const cut = fresh.lastIndexOf('\n') + 1;
    this.read += cut;
    const now = Date.now();
    for (const line of fresh.slice(0, cut).split('\n')) {
      const r = /^VCMPI iter=(\d+) ranks=\d+ ms_per_iter=([\d.]+)/.exec(line);
      if (r) this.reports.push({ iter: Number(r[1]), msPerIter: Number(r[2]), at: now });
      else if (this.end) continue;
      else if (line.startsWith('VCMPI verified')) this.end = { ok: true, line };
      else if (/^VCMPI (FAILED|error)|^VCGUEST error|^VCMPI exit status=[1-9]/.test(line)) this.end = { ok: false, line };
    }
  }

  /** Polls until the job ends or `timeoutMs` passes; false on a timeout. */
  async finished(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.poll();
      if (this.end) return true;
      if (Date.now() > deadline) return false;
      await sleep(this.everyMs);
    }
  }

  latest(): MpiReport | undefined {
    return this.reports.at(-1);
  }

  /** Median time per iteration of the reports read within [from, to). */
  medianMs(from: number, to: number): number | undefined {
    const xs = this.reports
      .filter((r) => r.at >= from && r.at < to)
      .map((r) => r.msPerIter)
      .sort((a, b) => a - b);
    if (!xs.length) return undefined;
    const m = xs.length >> 1;
    return xs.length % 2 ? xs[m]! : (xs[m - 1]! + xs[m]!) / 2;
  }

  /** The console's last lines, for a job that failed. */
  async tail(lines = 30): Promise<string> {
    const text = await readFile(this.console, 'utf8').catch(() => '');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  }
}
