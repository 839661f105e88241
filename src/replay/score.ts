import type { HostEntry } from '../collector/registry.js';
import { averageRates, type Environment } from '../placement/env.js';
import { defaultEnvironment } from '../placement/fromCollector.js';
import { siteLinks } from '../placement/problem.js';
import { envAt, envOf } from './view.js';
import type { Trace } from './trace.js';

/**
 * What a strategy's placement costs, period by period: the bytes that cross
 * sites (a VM's traffic counted where the replay has it then, an endpoint
 * that is not a VM where the environment puts it, unknown: left out), their
 * transfer price, the hosting price, and each migration's transfer over the
 * link (memory at the link's bandwidth and price).
 */
export interface Costs {
  interSiteBytes: number;
  /** VM-to-VM and VM-to-endpoint bytes whose two sites are known. */
  knownBytes: number;
  traffic: number;
  hosting: number;
  migration: number;
}

/** The trace's sites, hosts and prices under one environment version, as index arrays. */
interface Frame {
  env: Environment;
  hostSite: Int32Array;
  /** Per trace name: its site when it is an endpoint the environment places, else -1. */
  endpointSite: Int32Array;
  /** Per VM (directory index): hosting price per second on each host, by host index, at `ms` (a price may follow a schedule). */
  price: (vm: number, host: number, ms: number) => number;
  nSite: number;
  bytePrice: Float64Array;
  bps: Float64Array;
}

export class Scorer {
  readonly hostIndex: Map<string, number>;
  /** Per trace name: the VM (directory index) it is, or -1. */
  readonly nameVm: Int32Array;
  private frames = new Map<object, Frame>();
  readonly costs: Costs = { interSiteBytes: 0, knownBytes: 0, traffic: 0, hosting: 0, migration: 0 };
  /** Per scored period: inter-site bytes. */
  readonly series: number[] = [];

  constructor(
    readonly tr: Trace,
    readonly hosts: readonly HostEntry[],
    readonly override: Environment | undefined,
  ) {
    this.hostIndex = new Map(hosts.map((h, i) => [h.host, i]));
    const vmIndex = new Map(tr.vms.map((v, i) => [v.name, i]));
    this.nameVm = Int32Array.from(tr.names, (n) => vmIndex.get(n) ?? -1);
  }

  /** The environment in force at `ms` (the override, the trace's version, or derived from the registry). */
  frame(ms: number): Frame {
    const v = envAt(this.tr.environments, ms);
    const key = this.override ?? v;
    let f = this.frames.get(key);
    if (f) return f;
    const env = this.override ?? envOf(v) ?? defaultEnvironment(this.hosts, { ...v.defaults });
    const sites = new Map(env.sites.map((s, i) => [s.name, i]));
    const inEnv = new Map(env.hosts.map((h) => [h.name, h]));
    const S = env.sites.length;
    const hostSite = Int32Array.from(this.hosts, (h) => sites.get(inEnv.get(h.host)?.site ?? h.site) ?? -1);
    const endpointSite = Int32Array.from(this.tr.names, (n) => sites.get(env.endpoints.get(n) ?? '') ?? -1);
    const { bps, pricePerByte: bytePrice } = siteLinks(env);
    const vms = this.tr.vms;
    const price = (vm: number, host: number, ms: number) => {
      const hp = inEnv.get(this.hosts[host]!.host)?.price;
      if (!hp) return 0;
      const p = hp.schedule || hp.daily ? averageRates(hp, ms, ms + this.tr.periodSeconds * 1000) : hp;
      const v = vms[vm]!;
      return (p.perVmHour + v.vcpus * p.perVcpuHour + (v.memoryKiB / 1048576) * p.perGiBHour) / 3600;
    };
    f = { env, hostSite, endpointSite, price, nSite: S, bytePrice, bps };
    this.frames.set(key, f);
    return f;
  }

  /** Adds period `k` with the VMs on `hostOf` (host index per VM, -1: not running). */
  period(k: number, hostOf: Int32Array): void {
    const p = this.tr.periods[k]!;
    const f = this.frame(p.start * 1000);
    const S = f.nSite;
    let inter = 0;
    let known = 0;
    let price = 0;
    const site = (name: number) => {
      const v = this.nameVm[name]!;
      if (v < 0) return f.endpointSite[name]!;
      const h = hostOf[v]!;
      return h < 0 ? -1 : f.hostSite[h]!;
    };
    for (let j = 0; j < p.src.length; j++) {
      const a = site(p.src[j]!);
      const b = site(p.dst[j]!);
      if (a < 0 || b < 0) continue;
      const bytes = p.bytes[j]!;
      known += bytes;
      if (a !== b) {
        inter += bytes;
        price += bytes * f.bytePrice[a * S + b]!;
      }
    }
    let hosting = 0;
    for (let v = 0; v < hostOf.length; v++) if (hostOf[v]! >= 0) hosting += f.price(v, hostOf[v]!, p.start * 1000);
    this.costs.interSiteBytes += inter;
    this.costs.knownBytes += known;
    this.costs.traffic += price;
    this.costs.hosting += hosting * this.tr.periodSeconds;
    this.series.push(inter);
  }

  /** A migration of `memoryKiB` from host `from` to `to` at `ms`: its seconds over the link, and its transfer price added. */
  migration(memoryKiB: number, from: number, to: number, ms: number): number {
    const f = this.frame(ms);
    const a = f.hostSite[from]!;
    const b = f.hostSite[to]!;
    if (a < 0 || b < 0) return 0;
    const k = a * f.nSite + b;
    this.costs.migration += memoryKiB * 1024 * f.bytePrice[k]!;
    return (memoryKiB * 1024 * 8) / (f.bps[k]! || 1e9);
  }
}
