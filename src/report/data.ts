import type { Redis } from 'ioredis';
import type { GroupMethod, TrafficMeasure } from '../analysis/index.js';
import { clusterGroups, DEFAULT_GROUPS, interSiteShare } from '../placement/view.js';
import type { QueryOptions } from '../collector/query.js';
import { readHistory, type MigrationRecord } from '../manager/history.js';
import type { Environment } from '../placement/index.js';
import { readCollector, type CollectorView, type DefaultLinks } from '../placement/fromCollector.js';

/** How many of the newest migration records are read before keeping those of the span. */
export const HISTORY_LIMIT = 10_000;

export interface ReportOptions {
  /** The traffic query: mean or weighted over the span. */
  query: QueryOptions;
  method: GroupMethod;
  /** The measure that defines the groups and colours the matrix. */
  measure: TrafficMeasure;
  env?: Environment;
  /** Without `env`: the links assumed between the registry's sites (as groups and plan). */
  defaults?: DefaultLinks;
  /** Payback horizon (s) that decides which groups are significant (default 1 h, as groups and the manager). */
  horizonSeconds?: number;
  /** Clock (ms); the span ends with the newest period ended at this time. */
  now: number;
}

export interface ReportVm {
  name: string;
  host: string;
  site: string;
  /** Index into `groups`. */
  group: number;
  pinned: boolean;
}

export interface ReportGroup {
  /** 1-based, as printed. */
  id: number;
  members: string[];
  sites: string[];
  hosts: string[];
  /** Per second, in the report's measure: between members, and between members and the rest. */
  internal: number;
  external: number;
}

export interface MatrixCell {
  src: string;
  dst: string;
  /** Row (sender) and column (receiver) in `matrix.vms`. */
  row: number;
  col: number;
  messages: number;
  bytes: number;
}

/** Everything the pictures show, and what `--json` prints. Rates are per second, averaged (or weighted) over the span. */
export interface ReportData {
  generatedAt: string;
  span: {
    type: 'mean' | 'weighted';
    coefficient?: number;
    periods: number;
    periodSeconds: number;
    /** The traffic's span: start of the oldest period, end of the newest (ISO). */
    from: string;
    to: string;
    approximate: boolean;
    estimated: { period: number; host: string; from: number | null }[];
  };
  method: GroupMethod;
  measure: TrafficMeasure;
  /** Running VMs, ordered by group, then by name (vm2 before vm10). */
  vms: ReportVm[];
  groups: ReportGroup[];
  sites: { name: string; hosts: string[] }[];
  hosts: { name: string; site: string; live: boolean; vms: string[] }[];
  /** The communication matrix, sparse: only pairs with traffic; rows and columns in `vms` order. */
  matrix: { vms: string[]; cells: MatrixCell[]; max: { messages: number; bytes: number } };
  /** Traffic between a VM and an endpoint that is not a running VM (a gateway, a stopped VM): not in the matrix. */
  outside: { pairs: number; messages: number; bytes: number };
  interSite: {
    /** Share of VM-to-VM bytes that cross sites (as the manager computes it). */
    share: number;
    bytes: number;
    totalBytes: number;
    /** Per unordered pair of sites, both directions summed. */
    pairs: { sites: [string, string]; messages: number; bytes: number }[];
  };
  /** Migrations that started before now and ended after the span's start, oldest first. */
  migrations: MigrationRecord[];
  /** Things a person should know (silent hosts, VMs left out, history truncated). */
  notes: string[];
}

const byName = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });

/** Reads the collector once; `data` is null when the collector handed the query back (`view.answer`). */
export async function collectReport(redis: Redis, o: ReportOptions): Promise<{ view: CollectorView; data: ReportData | null }> {
  const view = await readCollector(redis, { query: o.query, now: o.now, ...(o.env && { env: o.env }), ...(o.defaults && { defaults: o.defaults }) });
  const a = view.answer;
  if (a.status !== 'ok' || a.type === 'detail') return { view, data: null };
  const L = a.periodSeconds;
  const spanFrom = a.periods[0]! * 1000;
  const spanTo = (a.periods[a.periods.length - 1]! + L) * 1000;

  // As `virt-cohort groups` and the manager find them (one answer everywhere).
  const found = clusterGroups(view, { method: o.method, measure: o.measure, horizonSeconds: o.horizonSeconds ?? DEFAULT_GROUPS.horizonSeconds, dissolve: true });
  const where = new Map(view.vms.map((v) => [v.name, v]));
  const groups = found
    .map((grp) => ({ ...grp, members: [...grp.members].sort(byName) }))
    .sort((x, y) => y.members.length - x.members.length || y.internal - x.internal || byName(x.members[0]!, y.members[0]!))
    .map(
      (grp, i): ReportGroup => ({
        id: i + 1,
        members: grp.members,
        internal: grp.internal,
        external: grp.external,
        sites: [...new Set(grp.members.map((m) => where.get(m)!.site))].sort(byName),
        hosts: [...new Set(grp.members.map((m) => where.get(m)!.host))].sort(byName),
      }),
    );
  const groupOf = new Map<string, number>();
  groups.forEach((grp, i) => grp.members.forEach((m) => groupOf.set(m, i)));
  const vms: ReportVm[] = groups.flatMap((grp, i) =>
    grp.members.map((m) => {
      const v = where.get(m)!;
      return { name: m, host: v.host, site: v.site, group: i, pinned: Boolean(v.pinned) };
    }),
  );

  const row = new Map(vms.map((v, i) => [v.name, i]));
  const cells = new Map<string, MatrixCell>();
  const outside = { pairs: 0, messages: 0, bytes: 0 };
  const siteOf = new Map(vms.map((v) => [v.name, v.site]));
  const sitePairs = new Map<string, { sites: [string, string]; messages: number; bytes: number }>();
  for (const p of view.traffic) {
    const r = row.get(p.src);
    const c = row.get(p.dst);
    if (r === undefined || c === undefined) {
      outside.pairs++;
      outside.messages += p.messages;
      outside.bytes += p.bytes;
      continue;
    }
    const key = `${r} ${c}`;
    const cell = cells.get(key) ?? { src: p.src, dst: p.dst, row: r, col: c, messages: 0, bytes: 0 };
    cell.messages += p.messages;
    cell.bytes += p.bytes;
    cells.set(key, cell);
    const sa = siteOf.get(p.src)!;
    const sb = siteOf.get(p.dst)!;
    if (sa !== sb) {
      const pair = [sa, sb].sort(byName) as [string, string];
      const k = pair.join('\n');
      const s = sitePairs.get(k) ?? { sites: pair, messages: 0, bytes: 0 };
      s.messages += p.messages;
      s.bytes += p.bytes;
      sitePairs.set(k, s);
    }
  }
  const matrixCells = [...cells.values()].sort((x, y) => x.row - y.row || x.col - y.col);
  const totalBytes = matrixCells.reduce((s, c) => s + c.bytes, 0);
  const crossBytes = [...sitePairs.values()].reduce((s, p) => s + p.bytes, 0);

  const live = new Set(view.hosts.map((h) => h.name));
  const hostNames = [...new Set([...view.registry.map((h) => h.host), ...vms.map((v) => v.host)])].sort(byName);
  const hostSite = new Map([...view.registry.map((h) => [h.host, h.site] as const), ...vms.map((v) => [v.host, v.site] as const)]);
  const hosts = hostNames.map((h) => ({
    name: h,
    site: hostSite.get(h) ?? '',
    live: live.has(h),
    vms: vms
      .filter((v) => v.host === h)
      .map((v) => v.name)
      .sort(byName),
  }));
  const siteNames = [...new Set(hosts.map((h) => h.site))].sort(byName);
  const sites = siteNames.map((s) => ({ name: s, hosts: hosts.filter((h) => h.site === s).map((h) => h.name) }));

  const notes = [...view.notes];
  const history = await readHistory(redis, HISTORY_LIMIT);
  const migrations = history.filter((m) => m.at <= o.now && m.at + m.seconds * 1000 >= spanFrom).sort((x, y) => x.at - y.at);
  if (history.length >= HISTORY_LIMIT && history[history.length - 1]!.at >= spanFrom) {
    notes.push(`only the newest ${HISTORY_LIMIT} migration records were read: older migrations of the span are not shown`);
  }

  const data: ReportData = {
    generatedAt: new Date(o.now).toISOString(),
    span: {
      type: a.type,
      ...(a.type === 'weighted' && a.coefficient !== undefined && { coefficient: a.coefficient }),
      periods: a.periods.length,
      periodSeconds: L,
      from: new Date(spanFrom).toISOString(),
      to: new Date(spanTo).toISOString(),
      approximate: a.approximate,
      estimated: a.estimated,
    },
    method: o.method,
    measure: o.measure,
    vms,
    groups,
    sites,
    hosts,
    matrix: {
      vms: vms.map((v) => v.name),
      cells: matrixCells,
      max: { messages: matrixCells.reduce((m, c) => Math.max(m, c.messages), 0), bytes: matrixCells.reduce((m, c) => Math.max(m, c.bytes), 0) },
    },
    outside,
    interSite: {
      share: interSiteShare(view),
      bytes: crossBytes,
      totalBytes,
      pairs: [...sitePairs.values()].sort((x, y) => y.bytes - x.bytes),
    },
    migrations,
    notes,
  };
  return { view, data };
}
