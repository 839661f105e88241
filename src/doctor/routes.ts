import { Registry } from '../collector/registry.js';
import { connectChecked } from '../config/redis.js';
import { trustedRoutes } from '../manager/manager.js';
import { RouteVetter } from '../manager/trust.js';
import { res, type CheckResult, type DoctorContext } from './checks.js';

/** On the manager's host: does its configuration vouch for every registered host's routes? (src/manager/trust.ts) */
export async function checkRoutes(c: DoctorContext): Promise<CheckResult> {
  const id = 'routes';
  const title = 'manager routes';
  if (!c.routes) return res(id, title, 'skip', 'no manager.hostRoutes or manager.hostUris configured here: this host runs no manager', "on the manager's host: virt-cohort doctor --manager");
  const vetter = new RouteVetter(c.routes);
  if (vetter.problems.length) return res(id, title, 'fail', vetter.problems.join('; '), 'correct those entries (virt-cohort config check)');
  let redis: Awaited<ReturnType<typeof connectChecked>>;
  try {
    redis = await connectChecked(c.redisUrl, c.redisAuth, 5000);
  } catch {
    return res(id, title, 'skip', 'Redis is not reachable: the registry cannot be read (see the redis check)');
  }
  try {
    const hosts = await new Registry(redis).hosts();
    const { routes, refused } = trustedRoutes(hosts, vetter);
    if (refused.length) {
      return res(
        id,
        title,
        'fail',
        `${refused.length} of ${hosts.length} host(s) left alone by the manager (nothing migrates from or to them): ${refused.map((x) => `${x.host}: ${x.why}`).join('; ')}`,
        'make each agent register a route the manager vouches for (agent.libvirtUri, agent.migrateUri), or vouch for it (manager.hostRoutes, hostUris, migrateNetworks; docs/security.md)',
      );
    }
    return res(id, title, 'ok', `the manager's configuration vouches for the routes of all ${routes.size} registered host(s)`);
  } finally {
    redis.disconnect();
  }
}
