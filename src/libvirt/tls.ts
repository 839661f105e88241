import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { checkServerIdentity, connect, type PeerCertificate } from 'node:tls';

/**
 * A libvirt TLS endpoint looked at from the client's side, as libvirt itself
 * would judge it: the client's certificates (the URI's pkipath, else libvirt's
 * standard paths under /etc/pki), the host's certificate chain to the CA, its
 * dates, and that it names the host of the URI. Used by `doctor` and by the
 * manager, which leaves a host whose certificate fails alone, with the reason.
 */

export interface TlsProbe {
  ok: boolean;
  /** Why the host cannot be trusted, or what to watch (a certificate expiring soon), in a few words. */
  why?: string;
  /** The host certificate's end (ISO), when one was seen. */
  notAfter?: string;
}

/** The client's files, as libvirt looks for them (https://libvirt.org/kbase/tlscerts.html). */
export function clientPkiFiles(uri: URL): { ca: string; cert: string; key: string } {
  const dir = uri.searchParams.get('pkipath');
  if (dir) return { ca: join(dir, 'cacert.pem'), cert: join(dir, 'clientcert.pem'), key: join(dir, 'clientkey.pem') };
  return { ca: '/etc/pki/CA/cacert.pem', cert: '/etc/pki/libvirt/clientcert.pem', key: '/etc/pki/libvirt/private/clientkey.pem' };
}

/** True for the URIs libvirt reaches over TLS (qemu+tls://HOST/, and qemu://HOST/ whose default transport is TLS). */
export function isTlsUri(uri: string): boolean {
  try {
    const u = new URL(uri);
    return Boolean(u.hostname) && (u.protocol === 'qemu+tls:' || u.protocol === 'qemu:');
  } catch {
    return false;
  }
}

const SOON_MS = 14 * 86_400_000;

/** Connects to the URI's libvirtd TLS port with the client's certificates and judges the host's. */
export async function probeTls(uri: string, timeoutMs = 5000): Promise<TlsProbe> {
  const u = new URL(uri);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = Number(u.port || 16514);
  const files = clientPkiFiles(u);
  let pem: { ca: Buffer; cert: Buffer; key: Buffer };
  try {
    const [ca, cert, key] = await Promise.all([readFile(files.ca), readFile(files.cert), readFile(files.key)]);
    pem = { ca, cert, key };
  } catch (err) {
    return {
      ok: false,
      why: `the client's certificates cannot be read (${(err as Error).message}): put the CA, client certificate and key where libvirt looks (${files.ca}, ${files.cert}, ${files.key})`,
    };
  }
  return new Promise<TlsProbe>((resolve) => {
    const socket = connect({ host, port, ...pem, rejectUnauthorized: false, ...(isIP(host) ? {} : { servername: host }) });
    const done = (p: TlsProbe) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(p);
    };
    const timer = setTimeout(() => done({ ok: false, why: `no TLS answer from ${host}:${port} within ${timeoutMs} ms (is libvirtd listening with listen_tls, and the port open?)` }), timeoutMs);
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done({ ok: false, why: `TLS to ${host}:${port} failed: ${err.code ?? err.message}${err.code === 'ECONNREFUSED' ? ' (libvirtd does not listen for TLS there)' : ''}` }),
    );
    socket.once('secureConnect', () => {
      const peer = socket.getPeerCertificate() as PeerCertificate;
      const notAfter = peer.valid_to ? new Date(peer.valid_to).toISOString() : undefined;
      const at = notAfter ? { notAfter } : {};
      const e = String(socket.authorizationError);
      // Node checks the names too (ERR_TLS_CERT_ALTNAME_INVALID); checkServerIdentity below says which names.
      if (!socket.authorized && e !== 'ERR_TLS_CERT_ALTNAME_INVALID') {
        const what =
          e === 'CERT_HAS_EXPIRED'
            ? `its certificate expired on ${notAfter}`
            : e === 'CERT_NOT_YET_VALID'
              ? 'its certificate is not valid yet'
              : `its certificate is not signed by the CA in ${files.ca} (${e})`;
        done({ ok: false, why: `${host}: ${what}`, ...at });
        return;
      }
      const wrongName = checkServerIdentity(host, peer);
      if (wrongName) {
        done({ ok: false, why: `${host}: its certificate names ${peer.subjectaltname || peer.subject?.CN}, not ${host}`, ...at });
        return;
      }
      const left = notAfter ? Date.parse(notAfter) - Date.now() : Number.POSITIVE_INFINITY;
      done({ ok: true, ...(left < SOON_MS ? { why: `its certificate expires on ${notAfter}: renew it` } : {}), ...at });
    });
  });
}
