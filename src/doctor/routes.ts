import { Registry, type HostEntry } from '../collector/registry.js';
import { connectChecked } from '../config/redis.js';
import { RouteVetter, trustedRoutes } from '../manager/trust.js';
import { uriShapeProblem } from '../config/routes.js';
import { isTlsUri, probeTls } from '../libvirt/tls.js';
import { run } from '../util/exec.js';
import { res, type CheckResult, type DoctorContext } from './checks.js';

const UNREACHABLE = 'Redis is not reachable: the registry cannot be read (see the redis check)';

/** The host registry, read with the doctor's Redis settings; undefined when Redis does not answer. */
async function registeredHosts(c: DoctorContext): Promise<HostEntry[] | undefined> {
  const redis = await connectChecked(c.redisUrl, c.redisAuth, 5000).catch(() => undefined);
  if (!redis) return undefined;
  try {
    return await new Registry(redis).hosts();
  } finally {
    redis.disconnect();
  }
}

/**
 * On an agent's host: the URI it registers for the manager (agent.advertiseUri,
 * else libvirtUri) must reach it from elsewhere once the registry holds other hosts.
 */
export async function checkAdvertised(c: DoctorContext): Promise<CheckResult> {
  const id = 'advertise';
  const title = 'advertised URI';
  const uri = c.advertiseUri || c.libvirtUri;
  const local = uriShapeProblem(uri);
  if (!local) return res(id, title, 'ok', `the manager is told to reach this host at ${uri}${c.advertiseUri ? ' (agent.advertiseUri)' : ''}`);
  const hosts = await registeredHosts(c).catch(() => undefined);
  // Redis unreachable: judged as for a cluster, the safe side.
  const others = hosts ? hosts.filter((h) => h.host !== c.host).length : 1;
  return res(
    id,
    title,
    others ? 'fail' : 'warn',
    `this host registers ${uri} for the manager, and ${local}${others ? `: the registry holds ${others} other host(s), whose manager cannot reach this one` : '; fine while this is the only host'}`,
    `set agent.advertiseUri to how the manager reaches this host, e.g. qemu+tls://${c.host}.example/system or qemu+ssh://root@${c.host}.example/system (docs/security.md)`,
  );
}

/** On the manager's host: does its configuration vouch for every registered host's routes? (src/manager/trust.ts) */
export async function checkRoutes(c: DoctorContext): Promise<CheckResult> {
  const id = 'routes';
  const title = 'manager routes';
  if (!c.routes) return res(id, title, 'skip', 'no manager.hostRoutes or manager.hostUris configured here: this host runs no manager', "on the manager's host: virt-cohort doctor --manager");
  const vetter = new RouteVetter(c.routes);
  if (vetter.problems.length) return res(id, title, 'fail', vetter.problems.join('; '), 'correct those entries (virt-cohort config check)');
  const hosts = await registeredHosts(c);
  if (!hosts) return res(id, title, 'skip', UNREACHABLE);
  const { routes, refused } = trustedRoutes(hosts, vetter);
  if (refused.length) {
    return res(
      id,
      title,
      'fail',
      `${refused.length} of ${hosts.length} host(s) left alone by the manager (nothing migrates from or to them): ${refused.map((x) => `${x.host}: ${x.why}`).join('; ')}`,
      'make each agent register a route the manager vouches for (agent.advertiseUri: how the manager reaches that host, e.g. qemu+tls://HOST/system; agent.migrateUri), or vouch for it (manager.hostRoutes, hostUris, migrateNetworks; docs/security.md)',
    );
  }
  return res(id, title, 'ok', `the manager's configuration vouches for the routes of all ${routes.size} registered host(s)`);
}

/** On the manager's host: does every host its configuration vouches for answer, with a valid certificate naming it? */
export async function checkReach(c: DoctorContext): Promise<CheckResult> {
  const id = 'reach';
  const title = 'hosts reachable';
  if (!c.routes) return res(id, title, 'skip', 'this host runs no manager', "on the manager's host: virt-cohort doctor --manager");
  const hosts = await registeredHosts(c);
  if (!hosts) return res(id, title, 'skip', UNREACHABLE);
  const { routes } = trustedRoutes(hosts, new RouteVetter(c.routes));
  if (!routes.size) return res(id, title, 'skip', 'no registered host is vouched for (see the routes check)');
  // Every trusted host answers, and its certificate is valid and names it.
  const answers = await Promise.all([...routes].map(async ([host, r]) => ({ host, why: await unreachable(r.uri) })));
  const bad = answers.filter((a) => a.why);
  if (bad.length) {
    return res(
      id,
      title,
      'fail',
      `${bad.length} of ${routes.size} host(s) cannot be reached as the manager would: ${bad.map((b) => `${b.host}: ${b.why}`).join('; ')}`,
      "renew or re-issue that host's libvirt certificate (/etc/pki/libvirt/servercert.pem, signed by the manager's CA, naming the host), open its TLS port (16514), or correct its agent.advertiseUri",
    );
  }
  return res(id, title, 'ok', `all ${routes.size} host(s) the manager vouches for answer${[...routes.values()].some((r) => isTlsUri(r.uri)) ? ', their TLS certificates valid and naming them' : ''}`);
}

/** Why the manager could not reach a host's libvirt at `uri` (undefined: it can): its TLS certificate, or virsh's answer. */
async function unreachable(uri: string): Promise<string | undefined> {
  if (isTlsUri(uri)) {
    const p = await probeTls(uri);
    if (!p.ok) return p.why;
  }
  return run('virsh', ['-c', uri, 'version', '--daemon'], { timeoutMs: 10_000 }).then(
    () => undefined,
    (err: Error) => `virsh -c ${uri} fails: ${err.message.split('\n').find((l) => /error/i.test(l)) ?? err.message.split('\n')[0]}`,
  );
}
