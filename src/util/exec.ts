import { execFile } from 'node:child_process';
import { CommandError } from './errors.js';

export interface RunOptions {
  /** Run inside the network namespace /run/netns/NAME (nsenter keeps /sys/fs/bpf visible). */
  netns?: string;
  timeoutMs?: number;
  input?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * Runs a program with an argument array (never a shell), and rejects with a
 * CommandError that carries stdout and stderr when it fails.
 */
export function run(command: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  const [cmd, argv] = opts.netns ? ['nsenter', [`--net=/run/netns/${opts.netns}`, '--', command, ...args]] : [command, [...args]];
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, argv, { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, env: opts.env ?? process.env }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException & { code?: number | string }).code ?? null;
        reject(new CommandError(command, args, err.killed ? 'timeout' : code, stdout, stderr));
      } else {
        resolve(stdout);
      }
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Like run, but resolves to false instead of throwing (for probes). */
export async function succeeds(command: string, args: readonly string[], opts: RunOptions = {}): Promise<boolean> {
  try {
    await run(command, args, opts);
    return true;
  } catch {
    return false;
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * `p`, or a rejection "WHAT: no answer in N s" after `ms`: a call that may hang
 * (libvirt, or Redis whose client queues commands while it stalls) bounded.
 * An answer that comes later is ignored.
 */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  p.catch(() => undefined);
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what}: no answer in ${Math.round(ms) / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

/** Polls `probe` until it returns a value other than undefined, or throws after timeoutMs. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`);
    await sleep(everyMs);
  }
}
