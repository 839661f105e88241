import type { Redis } from 'ioredis';
import { Registry } from '../collector/registry.js';
import { connectChecked, RedisConnectError, redisLabel, usesTls } from '../config/redis.js';
import { DEFAULT_PRIMARY_NAME, type RedisAuth } from '../config/schema.js';
import { inspectSentinels, sentinelProblems } from '../config/sentinel.js';
import { PCAP_COST } from '../sensor/pcap.js';
import { res, type CheckResult, type DoctorContext } from './checks.js';

/** Redis (with sentinels: the sentinels, their quorum, the primary and its replicas), then the clock against Redis' TIME. */
export async function checkRedis(c: DoctorContext): Promise<CheckResult[]> {
  const auth = c.redisAuth?.password || c.redisAuth?.passwordFile ? 'password' : 'none';
  const tls = usesTls(c.redisUrl, c.redisAuth) ? 'yes' : 'no';
  const sentinel = c.redisAuth?.sentinels?.length ? await checkSentinels(c.redisAuth) : undefined;
  const out: CheckResult[] = sentinel?.results ?? [];
  let redis: Redis;
  try {
    redis = await connectChecked(c.redisUrl, c.redisAuth, 5000);
  } catch (err) {
    const e = err instanceof RedisConnectError ? err : { problem: (err as Error).message, fix: 'correct the redis section of the configuration' };
    out.push(res('redis', sentinel ? 'Redis primary' : 'Redis', 'fail', `${e.problem} (auth: ${auth}, tls: ${tls})`, e.fix));
    if (sentinel) out.push(res('replicas', 'Redis replicas', 'skip', 'the primary is not reachable'));
    out.push(res('clock', 'clock offset', 'skip', 'Redis is not reachable: no reference clock'));
    return out;
  }
  try {
    const version = /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? '?';
    if (c.redisAuth?.cluster?.length) {
      out.push(res('redis', 'Redis Cluster', 'ok', `Redis ${version}, ${redisLabel(c.redisUrl, c.redisAuth)} (auth: ${auth}, tls: ${tls})`));
      out.push(await checkCluster(redis));
    } else if (sentinel) {
      const where = sentinel.primary ? ` at ${sentinel.primary}` : '';
      out.push(res('redis', 'Redis primary', 'ok', `Redis ${version}, primary '${c.redisAuth!.primaryName}'${where} (auth: ${auth}, tls: ${tls})`));
      out.push(await checkReplicas(redis, sentinel.replicas));
    } else out.push(res('redis', 'Redis', 'ok', `Redis ${version} at ${c.redisUrl} (auth: ${auth}, tls: ${tls})`));
    const t0 = Date.now();
    const [s, us] = await redis.time();
    const t1 = Date.now();
    const offset = Number(s) * 1000 + Number(us) / 1000 - (t0 + t1) / 2;
    const text = `this host's clock is ${Math.abs(offset).toFixed(0)} ms ${offset > 0 ? 'behind' : 'ahead of'} Redis' (round trip ${t1 - t0} ms)`;
    const fix = 'periods are aligned on the wall clock: enable NTP here and on the Redis host (timedatectl set-ntp true; chronyc tracking)';
    if (Math.abs(offset) > (c.periodSeconds * 1000) / 2) out.push(res('clock', 'clock offset', 'fail', `${text}: reports land in the wrong periods`, fix));
    else if (Math.abs(offset) > 1000) out.push(res('clock', 'clock offset', 'warn', `${text}: more than 1 s`, fix));
    else out.push(res('clock', 'clock offset', 'ok', text));
    out.push(await sensorInUse(redis, c));
    return out;
  } finally {
    redis.disconnect();
  }
}

/**
 * A Redis Cluster's state as its nodes see it (CLUSTER INFO, CLUSTER SHARDS): every slot covered by a
 * primary that answers, and a replica for each primary (a failover needs one to promote).
 */
async function checkCluster(redis: Redis): Promise<CheckResult> {
  const info = String(await redis.call('CLUSTER', 'INFO'));
  const field = (k: string) => new RegExp(`^${k}:(\\S+)`, 'm').exec(info)?.[1] ?? '?';
  const nodes = String(await redis.call('CLUSTER', 'NODES'))
    .trim()
    .split('\n')
    .map((l) => l.split(' '));
  const primaries = nodes.filter((n) => /master/.test(n[2] ?? '') && !/fail/.test(n[2] ?? '') && n.length > 8);
  const lonely = primaries.filter((p) => !nodes.some((n) => n[3] === p[0] && /slave/.test(n[2] ?? '') && !/fail/.test(n[2] ?? ''))).map((p) => p[1]!.split('@')[0]);
  const what = `state ${field('cluster_state')}, ${field('cluster_slots_ok')} of 16384 slots ok, ${primaries.length} primaries with slots, ${nodes.length} nodes`;
  if (field('cluster_state') !== 'ok' || field('cluster_slots_ok') !== '16384')
    return res(
      'cluster',
      'Redis Cluster slots',
      'fail',
      `${what}: some slots have no primary that answers`,
      'redis-cli --cluster check HOST:PORT says which slots; start their nodes, or redis-cli --cluster fix HOST:PORT',
    );
  if (lonely.length)
    return res(
      'cluster',
      'Redis Cluster slots',
      'warn',
      `${what}; no replica online for ${lonely.join(', ')}: a failover there has nothing to promote`,
      'add a replica to each primary (redis-cli --cluster add-node NEW HOST:PORT --cluster-slave)',
    );
  return res('cluster', 'Redis Cluster slots', 'ok', `${what}; every primary has a replica`);
}

/** Every sentinel asked: do they answer, know the primary by its name, agree on it, and reach a quorum (SENTINEL CKQUORUM)? */
async function checkSentinels(auth: RedisAuth): Promise<{ results: CheckResult[]; primary?: string; replicas?: { total: number; up: number } }> {
  const name = auth.primaryName ?? DEFAULT_PRIMARY_NAME;
  const answers = await inspectSentinels(auth, 3000);
  const problems = sentinelProblems(answers, name);
  const answered = answers.filter((a) => !a.error);
  const silent = answers.filter((a) => a.error).map((a) => `${a.sentinel} (${a.error})`);
  const knowing = answered.filter((a) => a.primary);
  const counts = new Map<string, number>();
  for (const a of knowing) counts.set(a.primary!, (counts.get(a.primary!) ?? 0) + 1);
  const primary = [...counts].sort((a, b) => b[1] - a[1])[0]?.[0];
  const results: CheckResult[] = [];
  const agreement = problems.find((p) => !/cannot fail over/.test(p.problem));
  if (agreement) results.push(res('sentinels', 'Redis sentinels', 'fail', agreement.problem, agreement.fix));
  else {
    const note = silent.length ? `; not answering: ${silent.join(', ')}` : '';
    results.push(
      res(
        'sentinels',
        'Redis sentinels',
        silent.length ? 'warn' : 'ok',
        `${answered.length} of ${answers.length} sentinels answer, and name ${primary} as the primary of '${name}'${note}`,
        'start the sentinels that do not answer (systemctl start redis-sentinel)',
      ),
    );
  }
  const quorum = problems.find((p) => /cannot fail over/.test(p.problem));
  if (quorum) results.push(res('quorum', 'Sentinel quorum', 'fail', quorum.problem, quorum.fix));
  else if (knowing.length) {
    const q = knowing[0]!.quorum;
    results.push(res('quorum', 'Sentinel quorum', 'ok', `${knowing[0]!.sentinel}: ${q?.text ?? '?'} (each sentinel knows ${knowing[0]!.peers ?? 0} other(s))`));
  } else results.push(res('quorum', 'Sentinel quorum', 'skip', 'no sentinel knows the primary'));
  const withReplicas = knowing.find((a) => a.primary === primary && a.replicas);
  return { results, ...(primary ? { primary } : {}), ...(withReplicas?.replicas ? { replicas: withReplicas.replicas } : {}) };
}

/** The primary's replicas, as it lists them (INFO replication) and as the sentinels do: a failover needs one to promote. */
async function checkReplicas(redis: Redis, known?: { total: number; up: number }): Promise<CheckResult> {
  const info = await redis.info('replication');
  const role = /role:(\w+)/.exec(info)?.[1];
  if (role !== 'master')
    return res(
      'replicas',
      'Redis replicas',
      'fail',
      `the node the sentinels name answers as a ${role}, not as the primary`,
      'a failover is under way, or the sentinels are stale: run doctor again in a few seconds',
    );
  const lines = [...info.matchAll(/^slave\d+:ip=([^,]+),port=(\d+),state=(\w+),offset=(\d+),lag=(\d+)/gm)];
  const online = lines.filter((l) => l[3] === 'online');
  const sentinelsSay = known ? `; the sentinels know ${known.total}, ${known.up} up` : '';
  const list = lines.map((l) => `${l[1]}:${l[2]} ${l[3]}, lag ${l[5]} s`).join('; ');
  if (!online.length)
    return res(
      'replicas',
      'Redis replicas',
      'warn',
      `the primary has no replica online${list ? ` (${list})` : ''}${sentinelsSay}: a failover has nothing to promote, and writes are not waited for (WAIT)`,
      "start a replica of the primary (redis-server --replicaof HOST PORT, or 'replicaof HOST PORT' in its redis.conf)",
    );
  return res('replicas', 'Redis replicas', 'ok', `${online.length} replica(s) online: ${list}${sentinelsSay}`);
}

/** The backend this host's agent counts with, as it published it in the host registry. */
async function sensorInUse(redis: Redis, c: DoctorContext): Promise<CheckResult> {
  const entry = await new Registry(redis).host(c.host);
  const { sensor, sensorNote: note, lastSeen: seen } = entry ?? { sensor: '', sensorNote: '', lastSeen: 0 };
  if (!sensor) return res('sensor', 'sensor backend', 'skip', `host ${c.host} is not in the registry: its agent has not reported (is it running, with agent.host ${c.host}?)`);
  const ago = seen ? `, registered ${Math.round((Date.now() - seen) / 1000)} s ago` : '';
  if (sensor === 'ebpf') return res('sensor', 'sensor backend', 'ok', `the agent of ${c.host} counts with eBPF${ago}`);
  return res(
    'sensor',
    'sensor backend',
    'warn',
    `the agent of ${c.host} counts with libpcap${note ? ` because eBPF is not available: ${note}` : ' (agent.sensor: pcap)'}${ago}. ${PCAP_COST}`,
    note ? 'fix the cause above (see the bpf, bpffs and clsact checks), then restart the agent' : 'set agent.sensor: auto (or ebpf) and restart the agent',
  );
}
