import { chmod, copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../util/exec.js';
import { UserError } from '../util/errors.js';
import { hostDir, labDir } from './state.js';
import { hosts, type LabHost, type LabSettings } from './topology.js';

/**
 * The lab's PKI, made at `lab up` with certtool (Debian's gnutls-bin), in
 * libvirt's own layout: a lab CA; for each host one certificate for both ends
 * (libvirtd's TLS listener and its peer-to-peer client, QEMU's migration
 * stream), naming the host's management and migration addresses; and one
 * client certificate for the manager, the commands and the tests, given to
 * libvirt by the URI's `pkipath`. Nothing is written outside the lab's
 * directory, so labs never share or overwrite a machine's /etc/pki.
 */

/** The lab CA's certificate and key (a lab's own: kept to sign the certificates of tests that need a bad one). */
export const labCa = (name: string) => {
  const dir = join(labDir(name), 'pki', 'ca');
  return { dir, cert: join(dir, `virt-cohort_lab_${name}_CA-cert.pem`), key: join(dir, `virt-cohort_lab_${name}_CA-key.pem`) };
};
/** Where the lab's clients find cacert.pem, clientcert.pem and clientkey.pem (the URI's pkipath). */
export const labClientPki = (name: string) => join(labDir(name), 'pki', 'client');
/** A host's libvirtd certificates (libvirtd.conf ca_file, cert_file, key_file). */
export const hostLibvirtPki = (name: string, host: string) => join(hostDir(name, host), 'pki', 'libvirt');
/** A host's QEMU certificates (qemu.conf default_tls_x509_cert_dir: ca-cert.pem, server-*.pem, client-*.pem). */
export const hostQemuPki = (name: string, host: string) => join(hostDir(name, host), 'pki', 'qemu');

const DAYS = 30;

/** What a certificate is for (a certtool template). */
export interface CertSpec {
  cn: string;
  ips?: string[];
  dns?: string[];
  server?: boolean;
  client?: boolean;
  ca?: boolean;
  /** Days it is valid; negative: already expired (tests of a bad certificate). */
  days?: number;
}

function template(c: CertSpec): string {
  const lines = [`cn = "${c.cn}"`, 'organization = "virt-cohort lab"', `expiration_days = ${c.days ?? DAYS}`];
  for (const ip of c.ips ?? []) lines.push(`ip_address = "${ip}"`);
  for (const d of c.dns ?? []) lines.push(`dns_name = "${d}"`);
  if (c.ca) lines.push('ca', 'cert_signing_key');
  else {
    if (c.server) lines.push('tls_www_server');
    if (c.client) lines.push('tls_www_client');
    lines.push('encryption_key', 'signing_key');
  }
  return `${lines.join('\n')}\n`;
}

async function certtool(args: string[]): Promise<string> {
  try {
    return await run('certtool', args, { timeoutMs: 60_000 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError('certtool is missing: the lab makes its TLS certificates with it (apt-get install gnutls-bin, or npm run setup)');
    throw err;
  }
}

/** A key and a certificate in `dir` (KEY.pem, CERT.pem), signed by the CA in `ca` (undefined: self-signed, the CA itself). */
export async function makeCert(dir: string, spec: CertSpec, ca?: { cert: string; key: string }): Promise<{ cert: string; key: string }> {
  await mkdir(dir, { recursive: true });
  const base = join(dir, spec.cn.replace(/[^\w.-]/g, '_'));
  const key = `${base}-key.pem`;
  const cert = `${base}-cert.pem`;
  const info = `${base}.info`;
  // RSA: libvirt asks a server certificate's key usage for key encipherment, which an ECDSA key cannot have.
  await certtool(['--generate-privkey', '--key-type', 'rsa', '--bits', '2048', '--outfile', key]);
  await chmod(key, 0o600);
  await writeFile(info, template(spec));
  if (spec.days !== undefined && spec.days < 0) {
    // certtool refuses a negative lifetime: an expired certificate is made with its dates in the past.
    await writeFile(info, template({ ...spec, days: 1 }).replace(/expiration_days = 1\n/, `activation_date = "2020-01-01 00:00:00 UTC"\nexpiration_date = "2020-01-31 00:00:00 UTC"\n`));
  }
  const signing = ca ? ['--generate-certificate', '--load-ca-certificate', ca.cert, '--load-ca-privkey', ca.key] : ['--generate-self-signed'];
  await certtool([...signing, '--load-privkey', key, '--template', info, '--outfile', cert]);
  return { cert, key };
}

/** Writes a host's or a client's certificates in libvirt's and QEMU's file names. */
async function install(files: Record<string, string>): Promise<void> {
  for (const [to, from] of Object.entries(files)) {
    await mkdir(join(to, '..'), { recursive: true });
    await copyFile(from, to);
    if (/key\.pem$/.test(to)) await chmod(to, 0o600);
  }
}

/** The certificate of one lab host: its names are its management and migration addresses, and its lab host name. */
export function hostCertSpec(h: LabHost): CertSpec {
  return { cn: h.mgmtIp, ips: [h.mgmtIp, h.dataIp], dns: [h.name], server: true, client: true };
}

/** Makes the lab's CA, each host's certificate and the client's, in the lab's directory. */
export async function makeLabPki(lab: LabSettings): Promise<void> {
  const dir = join(labDir(lab.name), 'pki');
  const ca = await makeCert(labCa(lab.name).dir, { cn: `virt-cohort lab ${lab.name} CA`, ca: true });
  const client = await makeCert(join(dir, 'made'), { cn: `virt-cohort lab ${lab.name} client`, client: true }, ca);
  const c = labClientPki(lab.name);
  await install({ [join(c, 'cacert.pem')]: ca.cert, [join(c, 'clientcert.pem')]: client.cert, [join(c, 'clientkey.pem')]: client.key });
  for (const h of hosts(lab)) await installHostCert(lab, h, await makeCert(join(dir, 'made'), hostCertSpec(h), ca), ca.cert);
}

/** Puts a host's certificate (and the CA's) where its libvirtd and QEMU read them; libvirtd reads them when it starts. */
export async function installHostCert(lab: LabSettings, h: LabHost, own: { cert: string; key: string }, caCert: string): Promise<void> {
  const l = hostLibvirtPki(lab.name, h.name);
  const q = hostQemuPki(lab.name, h.name);
  await install({
    [join(l, 'cacert.pem')]: caCert,
    [join(l, 'servercert.pem')]: own.cert,
    [join(l, 'serverkey.pem')]: own.key,
    [join(q, 'ca-cert.pem')]: caCert,
    [join(q, 'server-cert.pem')]: own.cert,
    [join(q, 'server-key.pem')]: own.key,
    [join(q, 'client-cert.pem')]: own.cert,
    [join(q, 'client-key.pem')]: own.key,
  });
}
