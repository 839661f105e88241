import { createHash } from 'node:crypto';
import { UserError } from '../util/errors.js';
import { K } from './keys.js';

/**
 * Redis 7 ACL users by role (`virt-cohort acl`; docs/security.md): each
 * agent may write its own host's registry entry, packed reports and event
 * stream, and no other host's; the manager writes the leader lock, the
 * cooldowns and the migration history, and the operator's writes (host drain,
 * migrate, env apply|set) use the manager's user; the commands read. Key patterns are
 * built from the schema in keys.ts so that the two cannot drift apart.
 *
 * What an ACL cannot narrow (the keys all agents share by design) is listed
 * in docs/security.md, "What a stolen agent credential can still do".
 */
export type Role = 'agent' | 'manager' | 'reader';

export interface AclUser {
  name: string;
  role: Role;
  /** The agent's host. */
  host?: string;
  /** ACL rules after the password (ACL SETUSER NAME <password rule> ...rules, or one line of an aclfile). */
  rules: string[];
}

export interface AclOptions {
  hosts: readonly string[];
  /** Agents trim old periods (agent.retention > 0): each may then delete whole old periods, other hosts' reports included, and forget VMs stopped before them. */
  agentsTrim?: boolean;
}

/** agent.host's own form; it also keeps glob characters (* ? [ ] \) out of the key patterns. */
const HOST_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** The key of every period: `vc:period:*:…` from `vc:period:{0}:…`. */
const anyPeriod = (key: string) => key.replace('{0}', '*');

/**
 * What every client needs to connect (ioredis' ready check is INFO), to run a MULTI, and to wait for a
 * replica (WAIT: the agent's reports and the manager's lock, src/config/redis.ts replicated), and to use a
 * Redis Cluster; after any -@dangerous, which takes INFO away. In a cluster, every node gets the same aclfile.
 */
const CONNECT = [
  '+ping',
  '+info',
  '+time',
  '+select',
  '+hello',
  '+client|setname',
  '+client|getname',
  '+multi',
  '+exec',
  '+discard',
  '+wait',
  // With redis.cluster: ioredis learns the slots (CLUSTER SLOTS) and follows a slot being moved (ASKING); doctor reads the state.
  '+cluster|slots',
  '+cluster|info',
  '+cluster|nodes',
  '+asking',
];

/** Keys of the collector every agent writes: the period's guard and meta, the pair dictionary, the VM directory. */
function sharedAgentKeys(): string[] {
  return [
    K.periods,
    anyPeriod(K.reported(0)),
    anyPeriod(K.meta(0)),
    anyPeriod(K.pending(0)),
    anyPeriod(K.zsetsGone(0)),
    K.pairIds,
    K.pairNames,
    K.retiredNames('*'),
    K.pairDict,
    K.vms,
    K.vm('*'),
    K.addr,
  ];
}

export function agentUser(host: string, agentsTrim = false): AclUser {
  if (!HOST_RE.test(host)) throw new UserError(`'${host}' is not a host name as agent.host takes it (letters, digits, '_', '.', '-'): name the hosts as their agents do`);
  const oldZsets = K.oldZsets(0)
    .map((k) => `~${anyPeriod(k)}`)
    .join(' ');
  const own = [K.host(host), K.events(host), anyPeriod(K.hostPairs(0, host)), anyPeriod(K.hostMsgs(0, host)), anyPeriod(K.hostBytes(0, host))];
  const rules = [
    '+eval',
    '+evalsha',
    // Store.apply/materialise (and their Lua scripts: Redis checks each call inside against these), registerHost, putVm, vmGone, event;
    // and Store.trim's part every agent does, retention or not: deleting the zsets of the periods out of the newest agent.zsetPeriods.
    '+get',
    '+set',
    '+del',
    '+unlink',
    '+hget',
    '+hmget',
    '+exists',
    '+rename',
    '+hgetall',
    '+hset',
    '+hsetnx',
    '+hdel',
    '+hincrby',
    '+sadd',
    '+smembers',
    '+sismember',
    '+zadd',
    '+zmscore',
    '+zrange',
    '+zcount',
    '+zrem',
    '+xadd',
    ...[...own, ...sharedAgentKeys()].map((k) => `~${k}`),
    // Shared, but only added to: the host list, and the period length the first agent sets.
    `(~${K.hosts} +sadd +smembers +sismember)`,
    `(~${K.settings} +hsetnx +hget +hmget +hgetall)`,
    // Store.trim deletes the all-hosts zsets periods had before the per-host ones (nothing writes them any more).
    `(${oldZsets} +unlink)`,
    ...CONNECT,
  ];
  // Store.trim unlinks all of a period's keys in one command, and one selector must cover every key of a command.
  if (agentsTrim) rules.push(`(~${anyPeriod(K.reported(0)).replace(/:reported$/, '')} +unlink)`);
  // ... and forget the VMs stopped before the periods kept (Registry.forget).
  if (agentsTrim) rules.push(`(~${K.vms} +srem +smismember)`);
  return { name: `vc-agent-${host}`, role: 'agent', host, rules };
}

export function managerUser(): AclUser {
  return {
    name: 'vc-manager',
    role: 'manager',
    rules: [
      '+@read',
      '-@dangerous',
      ...CONNECT,
      '+eval',
      '+evalsha',
      '+set',
      '+incr',
      '+pexpire',
      '+pexpireat',
      '+del',
      '+hset',
      '+hdel',
      '+xadd',
      '%R~vc:*',
      `~${K.managerLock}`,
      `~${K.managerTerm}`,
      `~${K.managerStreak}`,
      `~${K.managerEvents}`,
      `~${K.cooldown('*')}`,
      `~${K.migrations}`,
      `~${K.migrating}`,
      // `virt-cohort env apply|set`: the operator's writes of the environment, as host drain's, go through this user (docs/security.md).
      `~${K.envVersion}`,
      `~${K.envVersions}`,
      // `virt-cohort host drain|undrain` sets one field of a host's entry (the manager does not trust that entry's routes anyway).
      `(~${K.host('*')} +hset)`,
    ],
  };
}

export function readerUser(): AclUser {
  return { name: 'vc-reader', role: 'reader', rules: ['+@read', '-@dangerous', ...CONNECT, '%R~vc:*'] };
}

export function aclUsers(o: AclOptions): AclUser[] {
  const hosts = [...new Set(o.hosts)];
  if (!hosts.length) throw new UserError("no host given: name every agent's host, as the host registry lists them (virt-cohort stats --hosts)");
  return [...hosts.map((h) => agentUser(h, o.agentsTrim)), managerUser(), readerUser()];
}

/** SHA-256 of a password, as an aclfile keeps it (`#HEX`): the file never holds the password itself. */
export const passwordHash = (password: string) => createHash('sha256').update(password).digest('hex');

/** One aclfile line: `user NAME reset on #HASH RULES…`. */
export function aclLine(u: AclUser, password: string): string {
  return ['user', u.name, 'reset', 'on', `#${passwordHash(password)}`, ...u.rules].join(' ');
}
