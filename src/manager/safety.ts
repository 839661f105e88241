import type { Redis } from 'ioredis';
import type { HostEntry, VmEntry } from '../collector/registry.js';
import { cooldownUntil } from './history.js';

/**
 * The migration safety checks, in one place, for every path that moves a VM:
 * `virt-cohort migrate`, the manager's rounds and the executor. whyHeld says
 * whether a move may go and, if not, why, as facts; the caller words them
 * (the round's `held` lines, or the command's message with its fix).
 */

/** Why a move may not go. */
export type Hold =
  | { kind: 'unknown-vm'; vm: string }
  | { kind: 'unknown-host'; host: string; known: string[] }
  | { kind: 'pinned'; vm: string; optOut: boolean }
  | { kind: 'not-running'; vm: string; state: string }
  | { kind: 'already-there'; vm: string; host: string }
  | { kind: 'no-room'; vm: string; host: string; freeKiB: number; needKiB: number }
  | { kind: 'draining'; host: string }
  | { kind: 'cooldown'; vm: string; until: number }
  | { kind: 'unconfirmed'; seen: number; needed: number };

/** Which checks a path applies beyond those every move passes (known VM and host, not pinned, running, not already there). */
export interface Checks {
  /**
   * The destination has the VM's memory free now. For a single move; a plan's
   * order keeps capacity right move after move, so its later moves are not
   * held by what the registry says is free before the first.
   */
  room: boolean;
  /** The destination is not draining. */
  draining: boolean;
  /** The VM is not in its cooldown (an operator may force a move through). */
  cooldown: boolean;
  /** The move has been proposed `rounds` rounds in a row (`seen` so far): the manager's hysteresis. */
  confirm?: { rounds: number; seen: number };
}

export interface Facts {
  /** The host registry and the VM directory, as read for this decision. */
  hosts: readonly HostEntry[];
  vms: readonly VmEntry[];
  now?: number;
}

/** Whether `vm` may move to `to` now; undefined when it may. Reads the VM's cooldown from Redis, then asks holdOf. */
export async function whyHeld(redis: Redis, move: { vm: string; to: string }, facts: Facts, checks: Checks): Promise<Hold | undefined> {
  const until = checks.cooldown ? await cooldownUntil(redis, move.vm) : 0;
  return holdOf(move, { ...facts, cooldowns: new Map([[move.vm, until]]) }, checks);
}

/**
 * whyHeld on facts already read (`cooldowns`: VM → end of its cooldown, ms),
 * for a decision made without I/O (the manager's round, a replay). The checks
 * run in this order, so the first reason found is given.
 */
export function holdOf(move: { vm: string; to: string }, facts: Facts & { cooldowns: ReadonlyMap<string, number> }, checks: Checks): Hold | undefined {
  const v = facts.vms.find((x) => x.name === move.vm);
  if (!v) return { kind: 'unknown-vm', vm: move.vm };
  const dst = facts.hosts.find((h) => h.host === move.to);
  if (!dst) return { kind: 'unknown-host', host: move.to, known: facts.hosts.map((h) => h.host) };
  if (v.pinned) return { kind: 'pinned', vm: v.name, optOut: v.optOut };
  if (v.state !== 'running') return { kind: 'not-running', vm: v.name, state: v.state };
  if (v.host === move.to) return { kind: 'already-there', vm: v.name, host: move.to };
  if (checks.room && dst.freeMemoryKiB < v.memoryKiB) return { kind: 'no-room', vm: v.name, host: move.to, freeKiB: dst.freeMemoryKiB, needKiB: v.memoryKiB };
  if (checks.draining && dst.draining) return { kind: 'draining', host: move.to };
  if (checks.cooldown) {
    const until = facts.cooldowns.get(v.name) ?? 0;
    if (until > (facts.now ?? Date.now())) return { kind: 'cooldown', vm: v.name, until };
  }
  if (checks.confirm && checks.confirm.seen < checks.confirm.rounds) return { kind: 'unconfirmed', seen: checks.confirm.seen, needed: checks.confirm.rounds };
  return undefined;
}

/** A hold in a few words, as a round lists it (`held VM -> HOST: ...`). */
export function describeHold(h: Hold): string {
  switch (h.kind) {
    case 'unknown-vm':
      return `${h.vm} is not in the VM directory`;
    case 'unknown-host':
      return `${h.host} is not in the host registry`;
    case 'pinned':
      return `pinned by its domain metadata (${h.optOut ? 'count="no"' : 'move="never"'})`;
    case 'not-running':
      return `${h.vm} is ${h.state}, not running`;
    case 'already-there':
      return `already on ${h.host}`;
    case 'no-room':
      return `${h.host} has ${Math.floor(h.freeKiB / 1024)} MiB free, ${h.vm} needs ${Math.ceil(h.needKiB / 1024)} MiB`;
    case 'draining':
      return `${h.host} is draining`;
    case 'cooldown':
      return `in cooldown until ${new Date(h.until).toISOString()}`;
    case 'unconfirmed':
      return `proposed ${h.seen} round(s) in a row; moves after ${h.needed}`;
  }
}

/** Why a move of the executor's queue cannot start yet. */
export type Wait = 'cluster-full' | 'host-busy' | 'source-full';

export interface Limits {
  /** Outbound migrations at once per source host. */
  maxPerHost: number;
  /** Migrations at once in the cluster. */
  maxConcurrent: number;
}

interface Route {
  from: string;
  to: string;
}

/**
 * Whether `m` may start now, given the moves `running` and the unfinished
 * moves before it (running or queued ahead): it waits while the cluster is at
 * its maximum, while an earlier move touches one of its hosts (the plan's
 * order keeps capacity right after each single move), and while its source
 * has no free outbound slot.
 */
export function whyWait(m: Route, running: readonly Route[], earlier: readonly Route[], limits: Limits): Wait | undefined {
  if (running.length >= limits.maxConcurrent) return 'cluster-full';
  if (earlier.some((e) => [e.from, e.to].includes(m.from) || [e.from, e.to].includes(m.to))) return 'host-busy';
  if (running.filter((e) => e.from === m.from).length >= limits.maxPerHost) return 'source-full';
  return undefined;
}
