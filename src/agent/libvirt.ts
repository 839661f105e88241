import type { DomainSnapshot, NodeSnapshot } from '../libvirt/client.js';
import { withTimeout } from '../util/exec.js';
import { logger } from '../util/log.js';

const log = logger('agent');

/** What the agent asks of libvirt; LibvirtClient in production, a stand-in where no real hypervisor can run (the 1,000-VM benchmark). */
export interface DomainSource {
  domains(): Promise<DomainSnapshot[]>;
  node(): Promise<NodeSnapshot>;
  close(): Promise<void>;
}

/** A libvirt call that takes longer is given up and the connection dropped: a hung call must not stop the reconciles. */
export const LIBVIRT_TIMEOUT_MS = 20_000;

/**
 * The agent's connection to its local libvirt: every call bounded, a failed
 * call answered by a new connection at once (after libvirtd restarts, the old
 * one fails, and the next reconcile would come too late for a VM arriving
 * now), and the node as last described kept for the heartbeat.
 *
 * Each call holds a thread of Node's pool (the binding's async workers) until
 * libvirt answers, and file writes share that pool. So a call that does not
 * answer in time is remembered, and no other call is made until it settles:
 * a hung libvirtd holds at most one call's threads, and the spool and the
 * period ledger keep being written.
 */
export class LibvirtLink {
  private client?: DomainSource;
  /** A call that did not answer in time and has not settled yet. */
  private hung?: { since: number; settled: Promise<void> };
  /** The node as libvirt last described it. */
  node?: NodeSnapshot;

  constructor(
    readonly uri: string,
    private readonly connect: (uri: string) => Promise<DomainSource>,
    /** Told why libvirt cannot be asked now (the agent logs each reason once). */
    private readonly waiting: (what: string) => void,
    /** Told when a call that hung has answered: time to reconcile. */
    private readonly answered: () => void,
  ) {}

  /** The active domains, or undefined while libvirt cannot be asked. */
  async domains(): Promise<DomainSnapshot[] | undefined> {
    if (this.hung) {
      this.waiting(`libvirt at ${this.uri} (a call has not answered since ${new Date(this.hung.since).toISOString()})`);
      return undefined;
    }
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        if (!this.client) {
          this.client = await this.ask(this.connect(this.uri), 'connecting to libvirt');
          log.info({ uri: this.uri }, 'libvirt connected');
        }
        return await this.ask(this.client.domains(), 'listing the domains');
      } catch (err) {
        const stale = this.client;
        this.client = undefined;
        const hung = this.hungCall();
        // Closed once nothing hangs on it: a close sent to a daemon that does not answer would hang too.
        if (stale) void (hung?.settled ?? Promise.resolve()).then(() => stale.close()).catch(() => undefined);
        if (attempt === 1 || !stale || hung) this.waiting(`libvirt at ${this.uri} (${(err as Error).message})`);
        if (!stale || hung) return undefined;
      }
    }
    return undefined;
  }

  /** Reads the node again if libvirt answers; the node as last described either way (undefined before the first answer). */
  async readNode(): Promise<NodeSnapshot | undefined> {
    if (this.client && !this.hung) this.node = (await this.ask(this.client.node(), 'reading the node').catch(() => undefined)) ?? this.node;
    return this.node;
  }

  async close(): Promise<void> {
    if (!this.hung) await withTimeout(this.client?.close() ?? Promise.resolve(), 5000, 'closing libvirt').catch(() => undefined);
  }

  /** The call that hung, if any (a method: the compiler would take the field checked above as still unset). */
  private hungCall(): { since: number; settled: Promise<void> } | undefined {
    return this.hung;
  }

  private async ask<T>(call: Promise<T>, what: string): Promise<T> {
    try {
      return await withTimeout(call, LIBVIRT_TIMEOUT_MS, what);
    } catch (err) {
      if (/no answer in/.test((err as Error).message) && !this.hung) {
        const settled = call.then(
          () => undefined,
          () => undefined,
        );
        this.hung = { since: Date.now() - LIBVIRT_TIMEOUT_MS, settled };
        void settled.then(() => {
          this.hung = undefined;
          log.info({ uri: this.uri }, 'libvirt answered the call that hung');
          this.answered();
        });
      }
      throw err;
    }
  }
}
