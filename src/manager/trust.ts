import { BlockList, isIP } from 'node:net';

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
}

export type Vetted = { ok: true; route: Route } | { ok: false; why: string };

/** Transports that reach a remote libvirtd by itself; `qemu://HOST/` is TLS. ext runs a program, unix and `qemu:///` are local only. */
const REMOTE = new Set(['qemu:', 'qemu+tls:', 'qemu+tcp:', 'qemu+ssh:', 'qemu+libssh:', 'qemu+libssh2:']);
const SSH = new Set(['qemu+ssh:', 'qemu+libssh:', 'qemu+libssh2:']);
/** One DNS label, IPv4 octet or IPv6 group: what `*` may stand for. */
const PART = '[a-z0-9-]+';

const FIX = 'correct agent.libvirtUri on that host, or the manager\'s manager.hostRoutes / manager.hostUris';

/** Why a libvirt URI can never be a route to a remote host, or undefined when its shape is fine. */
export function uriShapeProblem(uri: string): string | undefined {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return `'${uri}' is not a URI`;
  }
  if (u.protocol === 'qemu+ext:') return `the ext transport runs a program of the URI's choosing (${uri})`;
  if (u.protocol === 'qemu+unix:' || !u.hostname) return `${uri} reaches only the machine it runs on, not a remote host`;
  if (!REMOTE.has(u.protocol)) return `transport ${u.protocol.slice(0, -1)} is not one of qemu+tls, qemu+tcp, qemu+ssh, qemu+libssh, qemu+libssh2`;
  if (u.search) return `query parameters (${[...u.searchParams.keys()].join(', ') || u.search}) let the URI choose a program, socket, key or TLS setting`;
  if (u.hash) return `a fragment (${u.hash}) has no place in a libvirt URI`;
  if (u.password) return 'a password in the URI';
  if (u.username && !(SSH.has(u.protocol) && /^[a-z_][a-z0-9_-]{0,31}$/.test(u.username))) return `user '${u.username}' (only an ssh transport takes a user)`;
  if (u.pathname !== '/system') return `path ${u.pathname}: the manager migrates through the system instance (/system)`;
  return undefined;
}

/** A pattern of manager.hostUris as a regular expression over the whole URI, or the reason it is refused. */
export function uriPattern(pattern: string): RegExp | string {
  const why = uriShapeProblem(pattern.replaceAll('*', 'x'));
  if (why) return why;
  // SCHEME://[USER@]HOST[:PORT]/system: a `*` only in HOST.
  const [, head, user, host, tail] = /^([^:]+:\/\/)([^@/]*@)?([^/]*)(\/.*)$/.exec(pattern) ?? [];
  if ([head, user, tail].some((part) => part?.includes('*')) || host === undefined) return '`*` may stand only in the host part';
  const re = pattern.toLowerCase().split('*').map((s) => s.replace(/[.+?^${}()|[\]\\/]/g, '\\$&')).join(PART);
  return new RegExp(`^${re}$`);
}

/** A CIDR of manager.migrateNetworks as [address, prefix, family], or the reason it is refused. */
export function parseCidr(cidr: string): [string, number, 'ipv4' | 'ipv6'] | string {
  const m = /^([0-9a-fA-F.:]+)\/(\d{1,3})$/.exec(cidr);
  const v = m ? isIP(m[1]!) : 0;
  if (!m || !v || Number(m[2]) > (v === 4 ? 32 : 128)) return `'${cidr}' is not a network like 10.0.1.0/24 or fd00::/64`;
  return [m[1]!, Number(m[2]), v === 4 ? 'ipv4' : 'ipv6'];
}

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
        why: pinned ? `registered libvirt URI ${uri} is not the one manager.hostRoutes gives it (${pinned.uri}): ${FIX}`
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
          why: `migration URI ${migrateUri} is ${pinned?.migrateUri ? `not the one manager.hostRoutes gives it (${pinned.migrateUri}) nor` : 'not'} in manager.migrateNetworks` +
            ` (${this.policy.migrateNetworks.join(', ') || 'none is configured'}): add its network there, or correct agent.migrateUri on that host`,
        };
      }
    }
    return { ok: true, route: { uri, ...(migrateUri ? { migrateUri } : {}) } };
  }
}
