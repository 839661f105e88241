import { isIP } from 'node:net';

/**
 * What a route setting of the manager may hold (manager.hostRoutes,
 * manager.hostUris, manager.migrateNetworks): the shape of a libvirt URI that
 * reaches a remote host, a pattern of such URIs, a network. The schema refuses
 * other values; the manager's RouteVetter (src/manager/trust.ts) applies them.
 */

/** Transports that reach a remote libvirtd by itself; `qemu://HOST/` is TLS. ext runs a program, unix and `qemu:///` are local only. */
const REMOTE = new Set(['qemu:', 'qemu+tls:', 'qemu+tcp:', 'qemu+ssh:', 'qemu+libssh:', 'qemu+libssh2:']);
const SSH = new Set(['qemu+ssh:', 'qemu+libssh:', 'qemu+libssh2:']);
/** One DNS label, IPv4 octet or IPv6 group: what `*` may stand for. */
const PART = '[a-z0-9-]+';

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
  if (u.search && !clientPki(u)) {
    return `query parameters (${[...u.searchParams.keys()].join(', ') || u.search}) let the URI choose a program, socket, key or TLS setting (only pkipath=/DIR on a TLS URI is taken: where the client's own certificates are)`;
  }
  if (u.hash) return `a fragment (${u.hash}) has no place in a libvirt URI`;
  if (u.password) return 'a password in the URI';
  if (u.username && !(SSH.has(u.protocol) && /^[a-z_][a-z0-9_-]{0,31}$/.test(u.username))) return `user '${u.username}' (only an ssh transport takes a user)`;
  if (u.pathname !== '/system') return `path ${u.pathname}: the manager migrates through the system instance (/system)`;
  return undefined;
}

/**
 * The one query parameter a route may carry: `pkipath`, the directory of the
 * client's own certificates (cacert.pem, clientcert.pem, clientkey.pem) on a
 * TLS URI. It only chooses which of the manager's certificates to present and
 * which CA to check the host against; verification stays on.
 */
function clientPki(u: URL): boolean {
  const keys = [...u.searchParams.keys()];
  return (
    (u.protocol === 'qemu+tls:' || u.protocol === 'qemu:') &&
    keys.length === 1 &&
    keys[0] === 'pkipath' &&
    /^\/[\w./-]+$/.test(u.searchParams.get('pkipath')!) &&
    !u.searchParams.get('pkipath')!.includes('..')
  );
}

/** A pattern of manager.hostUris as a regular expression over the whole URI, or the reason it is refused. */
export function uriPattern(pattern: string): RegExp | string {
  const why = uriShapeProblem(pattern.replaceAll('*', 'x'));
  if (why) return why;
  // SCHEME://[USER@]HOST[:PORT]/system: a `*` only in HOST.
  const [, head, user, host, tail] = /^([^:]+:\/\/)([^@/]*@)?([^/]*)(\/.*)$/.exec(pattern) ?? [];
  if ([head, user, tail].some((part) => part?.includes('*')) || host === undefined) return '`*` may stand only in the host part';
  const re = pattern
    .toLowerCase()
    .split('*')
    .map((s) => s.replace(/[.+?^${}()|[\]\\/]/g, '\\$&'))
    .join(PART);
  return new RegExp(`^${re}$`);
}

/** A CIDR of manager.migrateNetworks as [address, prefix, family], or the reason it is refused. */
export function parseCidr(cidr: string): [string, number, 'ipv4' | 'ipv6'] | string {
  const m = /^([0-9a-fA-F.:]+)\/(\d{1,3})$/.exec(cidr);
  const v = m ? isIP(m[1]!) : 0;
  if (!m || !v || Number(m[2]) > (v === 4 ? 32 : 128)) return `'${cidr}' is not a network like 10.0.1.0/24 or fd00::/64`;
  return [m[1]!, Number(m[2]), v === 4 ? 'ipv4' : 'ipv6'];
}
