import { buildGraph, detectGroups, type CohesiveOptions, type Group, type GroupMethod, type TrafficGraph, type TrafficMeasure } from '../analysis/index.js';
import type { CollectorView } from './fromCollector.js';
import { largestHost } from './live.js';
import { keepTogetherPays } from './significance.js';

/**
 * What every command reads about the cluster from one collector view: its
 * groups and the share of traffic crossing sites. groups, report, the manager
 * (and so the demo and the metrics) call these, so that the same data tells
 * one story.
 */
export interface GroupOptions {
  method?: GroupMethod;
  measure?: TrafficMeasure;
  cohesive?: CohesiveOptions;
  /** Payback horizon (s) of the significance rule (placement/significance.ts). */
  horizonSeconds?: number;
  /** bytes/s inside that make a group significant, instead of the rule. */
  minBytes?: number;
  /** Groups that are not significant come back as their VMs, each alone. */
  dissolve?: boolean;
  /** The view's graph when the caller built it already (viewGraph): a round builds it once for its groups and its plan. */
  graph?: TrafficGraph;
}

export type ClusterGroup = Group & { sites: string[] };

export const DEFAULT_GROUPS = { method: 'cohesive', measure: 'bytes', horizonSeconds: 3600 } as const;

export function clusterGroups(view: Pick<CollectorView, 'traffic' | 'vms' | 'environment'>, o: GroupOptions = {}): ClusterGroup[] {
  const { method, measure, horizonSeconds } = { ...DEFAULT_GROUPS, ...o };
  const g = o.graph ?? viewGraph(view);
  const groups = detectGroups(g, {
    method,
    measure,
    demand: view.vms.map((v) => ({ memoryKiB: v.memoryKiB, vcpus: v.vcpus })),
    hostLimit: largestHost(view.environment),
    ...(o.cohesive && { cohesive: o.cohesive }),
    significant: keepTogetherPays(view.environment, new Map(view.vms.map((v) => [v.name, v.memoryKiB])), horizonSeconds, o.minBytes),
    ...(o.dissolve && { dissolve: true }),
  });
  const siteOf = new Map(view.vms.map((v) => [v.name, v.site] as const));
  return groups.map((grp) => ({ ...grp, sites: [...new Set(grp.members.map((m) => siteOf.get(m) ?? '?'))].sort() }));
}

/** The traffic graph of a view: its VMs, in the view's order, then the other endpoints. */
export function viewGraph(view: Pick<CollectorView, 'traffic' | 'vms'>): TrafficGraph {
  return buildGraph(
    view.traffic,
    view.vms.map((v) => v.name),
  );
}

/** The share of VM-to-VM bytes that crosses sites. */
export function interSiteShare(view: Pick<CollectorView, 'traffic' | 'vms'>): number {
  const site = new Map(view.vms.map((v) => [v.name, v.site]));
  let all = 0;
  let cross = 0;
  for (const p of view.traffic) {
    const a = site.get(p.src);
    const b = site.get(p.dst);
    if (!a || !b) continue;
    all += p.bytes;
    if (a !== b) cross += p.bytes;
  }
  return all ? cross / all : 0;
}
