import { isTlsUri, probeTls, type TlsProbe } from '../libvirt/tls.js';
import type { HostRoute } from './executor.js';

/**
 * The TLS certificates of the hosts the manager reaches over TLS, looked at
 * (src/libvirt/tls.ts) at most once a minute per host: a host whose
 * certificate is expired, not signed by the CA, or names another host is left
 * alone with the reason, never migrated from or into blindly.
 */
export class CertWatch {
  private seen = new Map<string, { at: number; uri: string; why?: string }>();

  constructor(
    private readonly everyMs = 60_000,
    private readonly probe: (uri: string) => Promise<TlsProbe> = (uri) => probeTls(uri, 3000),
  ) {}

  /** The hosts among `routes` whose certificate fails now, with why. */
  async refused(routes: ReadonlyMap<string, HostRoute>): Promise<{ host: string; why: string }[]> {
    const now = Date.now();
    await Promise.all(
      [...routes]
        .filter(([, r]) => isTlsUri(r.uri))
        .map(async ([host, r]) => {
          const s = this.seen.get(host);
          if (s && s.uri === r.uri && now - s.at < this.everyMs) return;
          const p = await this.probe(r.uri);
          this.seen.set(host, { at: now, uri: r.uri, ...(p.ok ? {} : { why: p.why ?? 'its TLS certificate fails' }) });
        }),
    );
    return [...routes.keys()].flatMap((host) => {
      const why = this.seen.get(host)?.why;
      return why ? [{ host, why: `its libvirt TLS certificate fails (${why}); fix it, then it is checked again within a minute (virt-cohort doctor --manager)` }] : [];
    });
  }
}
