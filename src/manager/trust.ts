import { BlockList, isIP } from 'node:net';
import type { HostEntry } from '../collector/registry.js';
import { parseCidr, uriPattern, uriShapeProblem } from '../config/routes.js';
import type { HostRoute } from './executor.js';

/**
 * Which routes to a host the manager will use. A host's libvirt URI and
 * migration URI come from the registry, which any Redis client with write
 * access could have written: the manager uses them only when its own
 * configuration vouches for them, never on the registry's word alone. No
 * I/O here: pure checks, unit-tested in test/unit/trust.test.ts.
 */
export interface RoutePolicy {
  /** host → the URIs it must register (an explicit map; `migrateUri` '' or absent: left to the patterns below). */
  hostRoutes: Record<string, { uri: string; migrateUri?: string }>;
  /** Libvirt URIs allowed for any host, `*` standing for one name label or address part: qemu+tls://*.hv.example/system. */
  hostUris: string[];
  /** Networks (CIDR) a migration URI's address must be in: 10.0.1.0/24. */
  migrateNetworks: string[];
}

/** Just the policy's fields of a larger object (the manager's configuration section). */
export const routePolicy = (m: RoutePolicy): RoutePolicy => ({ hostRoutes: m.hostRoutes, hostUris: m.hostUris, migrateNetworks: m.migrateNetworks });

export const NO_ROUTES: Readonly<RoutePolicy> = Object.freeze({ hostRoutes: {}, hostUris: [], migrateNetworks: [] });

export interface Route {
  uri: string;
  migrateUri?: string;
  site?: string;
}

export type Vetted = { ok: true; route: Route } | { ok: false; why: string };

const FIX = "correct agent.libvirtUri on that host, or the manager's manager.hostRoutes / manager.hostUris";

/** Why a migration URI's shape is refused: only tcp://ADDRESS[:PORT], nothing else in it. */
function migrateShapeProblem(uri: string): string | undefined {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return `'${uri}' is not a URI`;
  }
  if (u.protocol !== 'tcp:' || !u.hostname || u.username || u.password || (u.pathname && u.pathname !== '/') || u.search || u.hash) {
    return `${uri} is not of the form tcp://ADDRESS[:PORT]`;
  }
  return undefined;
}

/** The policy with its patterns and networks compiled once; `vet` checks one registered host. */
export class RouteVetter {
  private readonly patterns: RegExp[] = [];
  private readonly networks = new BlockList();
  /** Problems of the policy itself (a bad pattern or network): reported, and the entry ignored. */
  readonly problems: string[] = [];

  constructor(readonly policy: RoutePolicy) {
    for (const p of policy.hostUris) {
      const re = uriPattern(p);
      if (typeof re === 'string') this.problems.push(`manager.hostUris '${p}': ${re}`);
      else this.patterns.push(re);
    }
    for (const n of policy.migrateNetworks) {
      const c = parseCidr(n);
      if (typeof c === 'string') this.problems.push(`manager.migrateNetworks: ${c}`);
      else this.networks.addSubnet(...c);
    }
  }

  get empty(): boolean {
    return !Object.keys(this.policy.hostRoutes).length && !this.patterns.length;
  }

  /** The route to `host`, or why its registered URIs are not used. */
  vet(host: string, uri: string, migrateUri = ''): Vetted {
    const pinned = Object.hasOwn(this.policy.hostRoutes, host) ? this.policy.hostRoutes[host] : undefined;
    const shape = uriShapeProblem(uri);
    if (shape) return { ok: false, why: `libvirt URI refused: ${shape}: ${FIX}` };
    if (pinned ? pinned.uri !== uri : !this.patterns.some((re) => re.test(uri.toLowerCase()))) {
      return {
        ok: false,
        why: pinned
          ? `registered libvirt URI ${uri} is not the one manager.hostRoutes gives it (${pinned.uri}): ${FIX}`
          : `libvirt URI ${uri} matches no manager.hostUris pattern${this.empty ? ' (none is configured)' : ''}: add the host to manager.hostRoutes or a pattern to manager.hostUris, see docs/security.md`,
      };
    }
    if (migrateUri) {
      const bad = migrateShapeProblem(migrateUri);
      if (bad) return { ok: false, why: `migration URI refused: ${bad}: correct agent.migrateUri on that host` };
      const addr = new URL(migrateUri).hostname.replace(/^\[|\]$/g, '');
      const family = isIP(addr);
      const inNetwork = family !== 0 && this.networks.check(addr, family === 4 ? 'ipv4' : 'ipv6');
      if (pinned?.migrateUri ? pinned.migrateUri !== migrateUri && !inNetwork : !inNetwork) {
        return {
          ok: false,
          why:
            `migration URI ${migrateUri} is ${pinned?.migrateUri ? `not the one manager.hostRoutes gives it (${pinned.migrateUri}) nor` : 'not'} in manager.migrateNetworks` +
            ` (${this.policy.migrateNetworks.join(', ') || 'none is configured'}): add its network there, or correct agent.migrateUri on that host`,
        };
      }
    }
    return { ok: true, route: { uri, ...(migrateUri ? { migrateUri } : {}) } };
  }
}

/**
 * How to reach each host's libvirt, and where migrations into it send memory:
 * only the registered routes `vetter` (the manager's configuration) vouches
 * for; each other host with the reason it is refused.
 */
export function trustedRoutes(registry: readonly HostEntry[], vetter: RouteVetter): { routes: Map<string, HostRoute>; refused: { host: string; why: string }[] } {
  const routes = new Map<string, HostRoute>();
  const refused: { host: string; why: string }[] = [];
  for (const h of registry) {
    const v = vetter.vet(h.host, h.uri, h.migrateUri);
    if (v.ok) routes.set(h.host, { ...v.route, site: h.site });
    else refused.push({ host: h.host, why: v.why });
  }
  return { routes, refused };
}
