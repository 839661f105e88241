import { readFile } from 'node:fs/promises';
import type { Redis } from 'ioredis';
import { query } from '../collector/query.js';
import { sleep } from '../util/exec.js';
import { requireLab } from './lab.js';
import { consoleLog } from './state.js';
import { domainName } from './topology.js';

/**
 * The sensor checked against the application's own side: what a Debian guest's
 * interface counted (its vc-init prints /sys/class/net/IF/statistics on the
 * console as `VCNET` lines when they change) against what the agents counted
 * for that VM, over every period since it started. The sensor counts wire
 * bytes; a guest counts wire bytes too only with segmentation offload off
 * (VmSpec.offload), else a super-packet's headers once.
 */
export interface NetCounters {
  rxBytes: number;
  rxPackets: number;
  txBytes: number;
  txPackets: number;
  /** TCP's InSegs and OutSegs (/proc/net/snmp): segments, however few super-packets carried them. */
  tcpInSegs: number;
  tcpOutSegs: number;
  /** Packets over the loopback, which TCP counts too (its offload off: one segment each). */
  loPackets: number;
  offload: string;
}

/** What the agents counted for a VM: pairs VM>* (sent) and *>VM (received), summed over the periods. */
export interface AgentCounts {
  txBytes: number;
  txPackets: number;
  rxBytes: number;
  rxPackets: number;
}

export interface CountCheck {
  vm: string;
  guest: NetCounters;
  agent: AgentCounts;
}

const VCNET = /^VCNET rx_bytes=(\d+) rx_packets=(\d+) tx_bytes=(\d+) tx_packets=(\d+) tcp_in_segs=(\d+) tcp_out_segs=(\d+) lo_packets=(\d+) offload=(\S+)/;

/** Ethernet, IPv4 and TCP with timestamps (Linux's default): what each segment of a super-packet repeats. */
const TCP_SEGMENT_HEADERS = 14 + 20 + 32;

/**
 * What a guest sent on the wire, from its own counters. With segmentation
 * offload its interface counts a TCP super-packet once, while TCP's OutSegs
 * counts each segment: those less the loopback's are the interface's, and each
 * beyond the interface's frames adds a frame and its headers. Without offload
 * the interface's frames are the segments already (and its ARP and the like),
 * and its counters stand. A little low with offload: the interface's non-TCP
 * frames (ARP, neighbour discovery: a handful) hide as many extra segments.
 * Received traffic has no such account: InSegs counts a GRO super-frame once.
 */
export function guestWire(c: NetCounters): { txBytes: number; txPackets: number } {
  const extra = Math.max(0, c.tcpOutSegs - c.loPackets - c.txPackets);
  return { txBytes: c.txBytes + extra * TCP_SEGMENT_HEADERS, txPackets: c.txPackets + extra };
}

/** The agents against the guests, in percent of the guests' figure, for one VM. */
export interface Gap {
  vm: string;
  offload: string;
  sentBytes: number;
  sentFrames: number;
  receivedBytes: number;
  /** What the received bytes were checked against. */
  receivedFrom: string;
}

/**
 * The gaps for the two VMs of one job. Sent: the guest's wire account
 * (guestWire). Received: the guest's interface with offload off; with it on
 * the interface counts merged super-frames and nothing in the guest says how
 * many segments they were, so the partner's wire account of what it sent
 * (all of it to this VM, but for a handful of ARP and neighbour frames).
 */
export function gaps(job: CountCheck[]): Gap[] {
  if (job.length !== 2) throw new Error(`gaps compares the two VMs of one job (got ${job.length})`);
  return job.map((r, i) => {
    const partner = job[1 - i]!;
    const w = guestWire(r.guest);
    const own = r.guest.offload === 'off';
    return {
      vm: r.vm,
      offload: r.guest.offload,
      sentBytes: countError(r.agent.txBytes, w.txBytes),
      sentFrames: countError(r.agent.txPackets, w.txPackets),
      receivedBytes: countError(r.agent.rxBytes, own ? r.guest.rxBytes : guestWire(partner.guest).txBytes),
      receivedFrom: own ? 'its interface' : `${partner.vm}'s wire account of what it sent`,
    };
  });
}

/** The guest's newest VCNET line, if it printed one. */
export function lastCounters(consoleText: string): NetCounters | undefined {
  let last: RegExpExecArray | null = null;
  for (const line of consoleText.split('\n')) last = VCNET.exec(line) ?? last;
  if (!last) return undefined;
  const n = (i: number) => Number(last![i]);
  return { rxBytes: n(1), rxPackets: n(2), txBytes: n(3), txPackets: n(4), tcpInSegs: n(5), tcpOutSegs: n(6), loPackets: n(7), offload: last[8]! };
}

/**
 * Waits until every VM's counters have stood still for `quietMs` (its traffic
 * is over: the job ended and its ssh sessions closed), then returns them.
 */
export async function settledCounters(labName: string, vms: string[], quietMs = 4000, timeoutMs = 60_000): Promise<Map<string, NetCounters>> {
  const seen = new Map<string, { c: NetCounters; since: number }>();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = Date.now();
    for (const vm of vms) {
      const c = lastCounters(await readFile(consoleLog(labName, vm), 'utf8').catch(() => ''));
      if (!c) continue;
      const prev = seen.get(vm);
      if (!prev || JSON.stringify(prev.c) !== JSON.stringify(c)) seen.set(vm, { c, since: now });
    }
    if (vms.every((vm) => seen.has(vm) && now - seen.get(vm)!.since >= quietMs)) return new Map(vms.map((vm) => [vm, seen.get(vm)!.c]));
    if (now > deadline) {
      const busy = vms.filter((vm) => !seen.has(vm) || now - seen.get(vm)!.since < quietMs);
      throw new Error(`the guests' counters did not settle within ${timeoutMs / 1000} s: ${busy.join(', ')} still sending (or printed no VCNET line)`);
    }
    await sleep(500);
  }
}

/**
 * The agents' counts for each lab VM from the period holding `fromMs` to the
 * one holding now: waits for that period to end and for every host's report of
 * each (detail query, no estimate). Pairs name VMs by their libvirt domain.
 */
export async function agentCounts(labName: string, redis: Redis, vms: string[], fromMs: number, periodSeconds: number): Promise<Map<string, AgentCounts>> {
  const lab = await requireLab(labName);
  const L = periodSeconds * 1000;
  const newest = Math.floor(Date.now() / L);
  await sleep((newest + 1) * L - Date.now() + 200);
  const span = newest - Math.floor(fromMs / L) + 1;
  const r = await query(redis, { type: 'detail', span, maxWaitMs: 4 * L, periodSeconds });
  if (r.status !== 'ok') throw new Error(`the agents' periods are not all reported: ${r.reason}`);
  if (r.type !== 'detail') throw new Error('a detail query answered with an aggregate');
  const byDomain = new Map(vms.map((vm) => [domainName(lab, vm), { txBytes: 0, txPackets: 0, rxBytes: 0, rxPackets: 0 }]));
  for (const d of r.detail) {
    for (const p of d.pairs) {
      const s = byDomain.get(p.src);
      if (s) {
        s.txBytes += p.bytes;
        s.txPackets += p.messages;
      }
      const t = byDomain.get(p.dst);
      if (t) {
        t.rxBytes += p.bytes;
        t.rxPackets += p.messages;
      }
    }
  }
  return new Map(vms.map((vm) => [vm, byDomain.get(domainName(lab, vm))!]));
}

/** Both sides, once the VMs' traffic is over. */
export async function checkCounts(labName: string, redis: Redis, vms: string[], fromMs: number, periodSeconds: number): Promise<CountCheck[]> {
  const guests = await settledCounters(labName, vms);
  const agents = await agentCounts(labName, redis, vms, fromMs, periodSeconds);
  return vms.map((vm) => ({ vm, guest: guests.get(vm)!, agent: agents.get(vm)! }));
}

/** Agent against guest, in percent of the guest's count (positive: the agent counted more). */
export const countError = (agent: number, guest: number) => (guest ? (100 * (agent - guest)) / guest : agent ? Number.POSITIVE_INFINITY : 0);
