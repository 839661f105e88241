import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { sleep } from '../util/exec.js';
import { isKernelTrouble } from './console.js';
import { requireLab } from './lab.js';
import { consoleLog } from './state.js';
import { spreadHost } from './topology.js';
import type { Workload } from './debian.js';
import { addVm, type AddedVm } from './vm.js';

/**
 * One report line of a job: how far it got (the stencil's iteration, the
 * load generator's requests), its time per iteration or per request over the
 * report's span (median for requests), and when the lab read it.
 */
export interface JobReport {
  count: number;
  ms: number;
  at: number;
}

export type JobKind = 'mpi' | 'web';

export type JobOptions = (
  | { kind: 'mpi'; ranks: number; iters: number; haloBytes: number }
  /** The web tier and its load generator on the first VM, the application on the second, Redis on the third. */
  | { kind: 'web'; requests: number; clients: number }
) & {
  memoryMiB: number;
  /** The first VM's number (default 1): the job runs on vmFIRST, vmFIRST+1, ... */
  first?: number;
  /** 'off': the guests turn segmentation offload off (see VmSpec.offload). */
  offload?: 'off';
};

/** How many VMs a job runs on. */
export const jobVms = (o: JobOptions) => (o.kind === 'mpi' ? o.ranks : 3);

/**
 * A job on Debian guests vm1..vmN spread over the sites in turn (vm1 on a1,
 * vm2 on b1, vm3 on a2, ...), so that each VM starts with its partners on the
 * other site: an MPI job's neighbouring ranks, or a service's next tier. The
 * others are added first; vm1 launches the job once they answer ssh.
 */
export async function startJob(labName: string, o: JobOptions, added: (vm: AddedVm) => void): Promise<JobWatch> {
  const lab = await requireLab(labName);
  const first = o.first ?? 1;
  const names = Array.from({ length: jobVms(o) }, (_, i) => `vm${first + i}`);
  const others = names.slice(1);
  const workload: Workload = o.kind === 'mpi' ? { kind: 'mpi', ranks: others, iters: o.iters, haloBytes: o.haloBytes } : { kind: 'web', tiers: others, requests: o.requests, clients: o.clients };
  for (const i of [...names.keys()].slice(1).concat(0)) {
    const vm = await addVm(labName, {
      name: names[i]!,
      host: spreadHost(lab, i + 1).name,
      index: first + i,
      pattern: 'idle',
      cluster: names.length,
      rate: 0,
      size: 256,
      memoryMiB: o.memoryMiB,
      wait: true,
      image: 'debian',
      ...(o.offload ? { offload: o.offload } : {}),
      ...(i === 0 ? { workload } : { role: o.kind === 'mpi' ? `rank ${i} of the MPI job ${names[0]} launches` : `${i === 1 ? 'the application tier' : 'Redis'} of ${names[0]}'s web service` }),
    });
    added(vm);
  }
  const watch = new JobWatch(consoleLog(labName, names[0]!), names, o.kind);
  watch.follow();
  return watch;
}

/** What, besides a kernel error, says a guest of the job is in trouble. */
const MPI_TROUBLE = /ORTE has lost communication/;

/** What each kind of job prints on its launcher's console (the stencil's VCMPI lines, vcweb.py's VCWEB lines). */
const LINES: Record<JobKind, { report: RegExp; verified: string; failed: RegExp }> = {
  mpi: { report: /^VCMPI iter=(\d+) ranks=\d+ ms_per_iter=([\d.]+)/, verified: 'VCMPI verified', failed: /^VCMPI (FAILED|error)|^VCGUEST error|^VCMPI exit status=[1-9]/ },
  web: { report: /^VCWEB req=(\d+) ms_per_req=([\d.]+)/, verified: 'VCWEB verified', failed: /^VCWEB (FAILED|error)|^VCGUEST error|^VCWEB exit status=[1-9]/ },
};

/**
 * Follows the launcher's console (one file for every host, so it survives the
 * migrations): the job's reports, and how it ended. The time of a report is
 * when the lab read it, at most `everyMs` late.
 */
export class JobWatch {
  readonly reports: JobReport[] = [];
  /** 'verified', or what went wrong (the job's FAILED line, its launcher's exit status, a guest error). */
  end?: { ok: boolean; line: string };
  /** Why finished() stopped waiting before the job ended. */
  gaveUp?: string;
  private read = 0;
  private timer?: NodeJS.Timeout;

  constructor(
    readonly console: string,
    /** The job's VMs, the launcher first. */
    readonly vms: string[] = [],
    readonly kind: JobKind = 'mpi',
    private readonly everyMs = 500,
  ) {}

  /** For people: what the job is, and what its reports time. */
  get title(): string {
    return this.kind === 'mpi' ? 'MPI job' : 'web service';
  }
  get unit(): string {
    return this.kind === 'mpi' ? 'iteration' : 'request';
  }

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
    const lines = LINES[this.kind];
    for (const line of fresh.slice(0, cut).split(/\r?\n/)) {
      const r = lines.report.exec(line);
      if (r) this.reports.push({ count: Number(r[1]), ms: Number(r[2]), at: now });
      else if (this.end) continue;
      else if (line.startsWith(lines.verified)) this.end = { ok: true, line };
      else if (lines.failed.test(line)) this.end = { ok: false, line };
    }
  }

  /**
   * Polls until the job ends; false when `timeoutMs` passes, or when the job
   * printed no report for `stallMs` (counted from the wait's start at the
   * earliest), and then `gaveUp` says which.
   */
  async finished(timeoutMs: number, stallMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    const start = Date.now();
    this.gaveUp = undefined;
    for (;;) {
      await this.poll();
      if (this.end) return true;
      const now = Date.now();
      const quiet = now - Math.max(start, this.latest()?.at ?? 0);
      if (quiet > stallMs) this.gaveUp = `printed no report for ${(quiet / 1000).toFixed(0)} s`;
      else if (now - start > timeoutMs) this.gaveUp = `did not finish in ${(timeoutMs / 1000).toFixed(0)} s`;
      if (this.gaveUp) return false;
      await sleep(this.everyMs);
    }
  }

  latest(): JobReport | undefined {
    return this.reports.at(-1);
  }

  /** Median time per iteration of the reports read within [from, to). */
  medianMs(from: number, to: number): number | undefined {
    const xs = this.reports
      .filter((r) => r.at >= from && r.at < to)
      .map((r) => r.ms)
      .sort((a, b) => a - b);
    if (!xs.length) return undefined;
    const m = xs.length >> 1;
    return xs.length % 2 ? xs[m]! : (xs[m - 1]! + xs[m]!) / 2;
  }

  /**
   * Signs in the job's consoles that a guest itself failed rather than the job:
   * a kernel error, a second boot, or mpirun losing a rank's daemon. Under TCG,
   * Debian 12's QEMU 7.2 sometimes corrupts a guest migrated while its network
   * is busy (docs/measurements.md); a KVM host does not run that code.
   *
   * With `silentMs` (a job that stalled), one more sign: a guest whose console
   * has not been written for that long while another of the job's guests' has.
   * Each guest prints its interface counters every second they change, so a
   * live guest whose peers retransmit to it speaks; a hung one does not.
   */
  async guestTrouble(silentMs?: number): Promise<string[]> {
    const out: string[] = [];
    const quiet: string[] = [];
    let anyLive = false;
    for (const vm of this.vms) {
      const file = join(dirname(this.console), `${vm}.console.log`);
      const text = await readFile(file, 'utf8').catch(() => '');
      const lines = text.split('\n');
      const boots = lines.filter((l) => l.startsWith('VCGUEST up')).length;
      if (boots > 1) out.push(`${vm}: booted ${boots} times`);
      for (const line of lines) if (isKernelTrouble(line) || MPI_TROUBLE.test(line)) out.push(`${vm}: ${line.trim()}`);
      if (silentMs === undefined) continue;
      const age = Date.now() - ((await stat(file).catch(() => undefined))?.mtimeMs ?? 0);
      if (age > silentMs) quiet.push(`${vm}: its console silent for ${(age / 1000).toFixed(0)} s while the job stalled`);
      else anyLive = true;
    }
    return anyLive ? out.concat(quiet) : out;
  }

  /** The console's last lines, for a job that failed. */
  async tail(lines = 30): Promise<string> {
    const text = await readFile(this.console, 'utf8').catch(() => '');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  }
}
