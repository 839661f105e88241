import { hostname } from 'node:os';
import { z } from 'zod';
import { DEFAULT_PERIOD_SECONDS } from '../util/period.js';
import { parseCidr, uriPattern, uriShapeProblem } from './routes.js';

/**
 * The one source of every setting: its type, range, default and description.
 * The modules' defaults (agent DEFAULTS, DEFAULT_MANAGER), the daemons' flags
 * (src/cli/settings.ts), the environment variables (env.ts), and the
 * generated src/config/default.yaml and docs/configuration-reference.md
 * (`npm run gen`) are all read from here. Unknown keys are refused: a typo
 * must not silently mean "default".
 *
 * A new key: add it to its section with a helper below (each takes the
 * description), give it a flag name in flags.ts if it is not the key in kebab
 * case, and run `npm run gen`.
 */

/** What each key carries besides its type and default (zod's .meta()). */
export type SettingDoc = {
  /** What the key does; the first sentence is the flag's help. */
  description: string;
  /** Environment variable that sets it (between the file and the flags). */
  env?: string;
  /** Placeholder of its flag's value (--host <name>); by default from the type. */
  arg?: string;
  /** No command-line flag: the file and the environment only. */
  flag?: false;
  /** Shown, commented out, in default.yaml: keys without a default or with one that depends on the machine. */
  example?: unknown;
  /** The value the packaged default.yaml sets instead of the built-in default. */
  packaged?: unknown;
  /** How the reference shows a default that depends on the machine. */
  defaultText?: string;
  /** Never printed nor logged (*** instead). */
  secret?: true;
};

/** What a plan can minimise (src/placement/problem.ts says what each one counts). */
export const OBJECTIVES = ['time', 'cost', 'resources'] as const;
/** Which groups seed the planner: ours (cohesive, with the other starts beside it), or only the seed's greedy groups or Louvain's, for comparison (virt-cohort replay). */
export const PLAN_METHODS = ['cohesive', 'louvain', 'seed'] as const;

/** Where an affinity or anti-affinity rule holds: the same (or another) host, or site. */
export const SCOPES = ['host', 'site'] as const;

export const DEFAULT_CONFIG_FILE = '/etc/virt-cohort/config.yaml';
/** The collector's Redis when none is configured (and the commands' --redis default). */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
/** The primary's name in Redis Sentinel's own example configuration (sentinel monitor mymaster ...). */
export const DEFAULT_PRIMARY_NAME = 'mymaster';
/** A sentinel: HOST, HOST:PORT or [IPv6]:PORT. */
export const HOST_PORT_RE = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*)(:\d{1,5})?$/;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const DURATION_RE = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/;
const absolute = { message: 'an absolute path' };

const name = (def: string, doc: SettingDoc) =>
  z
    .string()
    .regex(NAME_RE, { message: "letters, digits, '_', '.' or '-' (at most 63, starting with a letter or digit)" })
    .default(def)
    .meta({ arg: 'name', ...doc });
const text = (def: string, doc: SettingDoc) =>
  z
    .string()
    .min(1, { message: 'a non-empty string' })
    .default(def)
    .meta({ arg: 'value', ...doc });
const path = (def: string, doc: SettingDoc) =>
  z
    .string()
    .regex(/^\//, absolute)
    .default(def)
    .meta({ arg: 'path', ...doc });
const int = (min: number, max: number, def: number, doc: SettingDoc, check: (v: number) => boolean = () => true, message = '') =>
  z
    .number()
    .int()
    .min(min)
    .max(max)
    .refine(check, { message })
    .default(def)
    .meta({ arg: 'n', ...doc });
const port = (def: number, doc: SettingDoc) => int(0, 65535, def, { arg: 'port', ...doc });
const bool = (def: boolean, doc: SettingDoc) => z.boolean().default(def).meta(doc);
const oneOf = <const T extends readonly [string, ...string[]]>(values: T, def: T[number], doc: SettingDoc) =>
  z
    .enum(values)
    .default(def)
    .meta({ arg: values.join('|'), ...doc });
/** `30s`, `5m`, `1h`, `500ms`, or a number of seconds; kept as written, turned into ms where used (durationMs). */
const duration = (def: string, doc: SettingDoc) =>
  z
    .union([z.number().positive(), z.string().regex(DURATION_RE, { message: 'a duration like 30s, 5m, 1h, 500ms' })])
    .default(def)
    .meta({ arg: 'duration', ...doc });
const optionalFile = (doc: SettingDoc) =>
  z
    .string()
    .regex(/^\//, absolute)
    .optional()
    .meta({ arg: 'file', ...doc });
const optionalText = (doc: SettingDoc) =>
  z
    .string()
    .min(1)
    .optional()
    .meta({ arg: 'value', ...doc });
/** A string `problem` finds nothing wrong with; the message says what it should look like, and why this one is not. */
const checked = (like: string, problem: (s: string) => string | undefined) =>
  z.string().superRefine((v, ctx) => {
    const why = problem(v);
    if (why) ctx.addIssue({ code: 'custom', message: `${like} (${why})` });
  });
const failing =
  <T>(parse: (s: string) => T | string) =>
  (s: string) => {
    const r = parse(s);
    return typeof r === 'string' ? r : undefined;
  };
const MIGRATE_URI_RE = /^$|^tcp:\/\/[^\s/?#@]+$/;

export const agentSchema = z
  .strictObject({
    host: name(hostname(), {
      description: "This host's name in the host registry. Letters, digits, '_', '.', '-'.",
      env: 'VIRT_COHORT_HOST',
      defaultText: "the machine's hostname",
      example: 'hv01',
    }),
    site: name('default', { description: 'Site (cloud, grid, rack) of this host.', env: 'VIRT_COHORT_SITE' }),
    libvirtUri: text('qemu:///system', { description: 'The local hypervisor (libvirt URI) the agent itself uses.', env: 'VIRT_COHORT_LIBVIRT_URI', arg: 'uri' }),
    advertiseUri: z
      .string()
      .superRefine((v, ctx) => {
        const why = v ? uriShapeProblem(v) : undefined;
        if (why) ctx.addIssue({ code: 'custom', message: `empty, or a libvirt URI that reaches this host from the manager, like qemu+tls://hv01.example/system (${why})` });
      })
      .default('')
      .meta({
        description:
          "How the manager reaches this host's libvirt, registered for it (e.g. qemu+tls://hv01.example/system, or qemu+ssh://root@hv01.example/system); empty: libvirtUri, which with its default reaches only this machine: set it on every host of a cluster.",
        env: 'VIRT_COHORT_ADVERTISE_URI',
        arg: 'uri',
      }),
    periodSeconds: int(
      1,
      3600,
      DEFAULT_PERIOD_SECONDS,
      {
        description: 'Period length in seconds; must divide an hour. Periods are aligned on the wall clock, so every host must run NTP.',
        arg: 's',
      },
      (v) => 3600 % v === 0,
      'a whole number of seconds that divides an hour (1, 2, ... 30, ... 3600)',
    ),
    reconcileSeconds: int(1, 3600, 10, { description: 'Seconds between reconciles with libvirt (and heartbeats in the host registry).', arg: 's' }),
    socket: path('/run/virt-cohort/agent.sock', { description: 'The Unix socket the libvirt hook writes to (root only).' }),
    stateDir: path('/var/lib/virt-cohort', { description: 'Spool (reports waiting for Redis) and VM id table.', env: 'VIRT_COHORT_STATE_DIR', arg: 'dir' }),
    spoolMax: int(1, 10_000_000, 2880, {
      description: 'Reports kept on disk while Redis is unreachable (2880 = a day of 30 s periods); the oldest are dropped beyond, loudly.',
    }),
    retention: int(0, 100_000_000, 0, { description: 'Periods kept in Redis; 0 keeps all.' }),
    zsetPeriods: int(0, 100_000_000, 5, {
      description:
        "The newest periods whose readable sorted sets (each host's vc:period:{P}:host:H:msgs and :bytes, for redis-cli and tools) are kept; older periods keep only their packed reports, which the queries read. 0: no sorted sets. Set it alike on every agent.",
      arg: 'periods',
    }),
    sensor: oneOf(['auto', 'ebpf', 'pcap'], 'auto', { description: 'Sensor backend: auto (eBPF, else libpcap), ebpf or pcap.' }),
    pinRoot: path('/sys/fs/bpf/virt-cohort', { description: 'Where the eBPF sensor pins its maps (on bpffs).', arg: 'dir' }),
    migrateUri: z.string().regex(MIGRATE_URI_RE, { message: 'empty, or like tcp://ADDRESS[:PORT]' }).default('').meta({
      description: "Where migrations into this host send memory, e.g. tcp://10.0.1.5 (a dedicated migration network); empty: the libvirt URI's host.",
      arg: 'uri',
    }),
    metricsPort: port(0, { description: 'Port of the Prometheus endpoint (/metrics); 0 serves none.', env: 'VIRT_COHORT_AGENT_METRICS_PORT', packaged: 9464 }),
    metricsBind: text('127.0.0.1', { description: 'Address the metrics endpoint binds; 0.0.0.0 to let a remote Prometheus scrape it.', arg: 'address' }),
  })
  .meta({ description: 'The host agent (`virt-cohort agent`), one per physical host.' });

export const managerSchema = z
  .strictObject({
    apply: bool(false, { description: 'Migrate for real; false plans and logs only (a dry run).', env: 'VIRT_COHORT_MANAGER_APPLY' }),
    everyPeriods: int(1, 10_000, 2, { description: 'A decision round every N periods.', arg: 'periods' }),
    objective: oneOf(OBJECTIVES, 'time', { description: 'What a plan minimises: time (communication time), cost or resources.' }),
    method: oneOf(PLAN_METHODS, 'cohesive', {
      description:
        "Groups the planner starts from: cohesive (ours; the seed's greedy groups, the current placement and a bisection compete with it), or only louvain or seed (the seed report's greedy), to compare them.",
    }),
    horizon: duration('3600s', { description: 'A move must pay back within this (30s, 5m, 1h, or a number of seconds).' }),
    maxMoves: int(1, 100_000, 5, { description: 'Migrations per round at most.' }),
    // confirmRounds, cooldown, span and coefficient: chosen on the replay corpus (README, Record and replay).
    confirmRounds: int(1, 1000, 2, { description: 'A move is made once proposed this many rounds in a row.', arg: 'rounds' }),
    cooldown: duration('1200s', { description: 'First cooldown of a VM after it moved; doubles with each repeat.' }),
    externalHold: duration('30m', {
      description: 'A VM moved by something other than virt-cohort (virsh by hand, another balancer) stays where it was put this long; history records the move as external.',
    }),
    evacuateSilent: duration('10m', {
      description:
        "A host whose agent has not reported for this long has its VMs evacuated under the rules, through the host's libvirt (a failing host whose hypervisor still answers); 0: never. The VMs of a dead host cannot be live-migrated: that is for an HA restart.",
    }),
    quotaMargin: duration('5m', {
      description:
        "A host whose quota ends (the environment's availableUntil) is emptied before the end: its VMs' migrations, and those of hosts whose quota ends no later, are estimated one after the other (memory twice over the slowest link out of the site plus 8 s each, or what recent migrations took when longer), and the evacuation starts this much earlier still.",
    }),
    events: bool(true, {
      description: "React to the hosts' hook events between rounds (a VM started is placed at once, an external move is held, a drained host is emptied); false: rounds only.",
      flag: false,
    }),
    maxPerHost: int(1, 1000, 1, { description: 'Outbound migrations at once per host.' }),
    maxConcurrent: int(1, 10_000, 2, { description: 'Migrations at once in the cluster.' }),
    timeout: duration('300s', { description: 'A migration still running after this is aborted (the VM stays).' }),
    encrypt: oneOf(['never', 'between-sites', 'always'], 'between-sites', {
      description:
        "Which migrations send the VM's memory over TLS (virsh migrate --tls; the hosts need libvirt's QEMU certificates under /etc/pki/qemu): never, between-sites (the default: memory crossing a WAN is encrypted) or always. Each migration's history record says whether it was.",
    }),
    autoConverge: bool(false, { description: 'Let QEMU slow a VM whose memory changes faster than the link copies it.' }),
    live: bool(true, {
      description:
        "Migrate live: the VM runs while its memory is copied, and pauses only for the last pass. false: it is paused for the whole copy (virsh migrate without --live), so its downtime is the copy's time, but nothing depends on the hypervisor tracking the pages a running VM writes. For a hypervisor whose tracking cannot be trusted, such as Debian 12's QEMU 7.2 under TCG (docs/measurements.md).",
      flag: false,
    }),
    assumeSharedStorage: bool(false, {
      description:
        "Migrate VMs whose disks libvirt sees on a local file system, because every host sees them at the same path (virsh migrate --unsafe): storage libvirt does not recognise as shared, such as the lab's. Leave false with NFS, Ceph or GlusterFS, which libvirt recognises; with truly local disks a migration would corrupt them.",
    }),
    span: int(1, 100_000, 8, { description: 'Periods each round reads (weighted by the coefficient).', arg: 'periods' }),
    coefficient: z
      .number()
      .positive()
      .default(1)
      .meta({ description: 'Weight ratio between one period and the one before it in that reading: 1 counts every period alike, 2 the newest most.', flag: false }),
    maxWait: duration('5s', { description: "How long a round waits for the collector's answer.", flag: false }),
    settle: duration('2s', { description: "Wait after a period boundary, for the hosts' reports to arrive.", flag: false }),
    lockTtl: duration('15s', { description: 'Leader lock lifetime: a standby manager takes over this long after the leader dies.', flag: false }),
    exclude: z.array(z.string().min(1)).default([]).meta({ description: 'VMs never to move (also: the domain metadata policy move="never"). On the command line: a,b.', arg: 'vms' }),
    environment: z.string().default('').meta({
      description:
        'Environment file (sites, hosts, prices, links): overrides the environment stored in Redis (virt-cohort env), and the log says so; empty: the stored one, else one derived from the host registry.',
      arg: 'file',
    }),
    // Nova's defaults for the same two knobs (initial_cpu_allocation_ratio 4.0, reserved_host_memory_mb 512).
    cpuOvercommit: z
      .number()
      .positive()
      .max(64)
      .default(4)
      .meta({ description: 'Without an environment file: vCPUs allowed per host CPU (libvirt hosts are routinely overcommitted on vCPUs; an environment file sets its own).', arg: 'ratio' }),
    reserveMemory: int(0, 1_048_576, 512, { description: 'Without an environment file: MiB kept free on every host for the hypervisor itself.', arg: 'MiB' }),
    // Routes the manager vouches for (src/manager/trust.ts, docs/security.md): the registry's alone are never used.
    hostRoutes: z
      .record(
        z.string().regex(NAME_RE, { message: 'host names as agent.host takes them' }),
        z.strictObject({
          uri: checked('a libvirt URI like qemu+tls://HOST/system', uriShapeProblem),
          migrateUri: z.string().regex(MIGRATE_URI_RE, { message: 'empty, or like tcp://ADDRESS[:PORT]' }).optional(),
        }),
      )
      .default({})
      .meta({
        description:
          'Host → the libvirt URI (and migration URI) its agent must register: the manager migrates from and to a host only when its registered routes match these, hostUris or migrateNetworks (docs/security.md). With none of the three set, no host is trusted and nothing moves.',
        flag: false,
        example: { hv01: { uri: 'qemu+tls://hv01.hv.example/system', migrateUri: 'tcp://10.0.1.1' } },
      }),
    hostUris: z
      .array(checked('a URI pattern like qemu+tls://*.hv.example/system', failing(uriPattern)))
      .default([])
      .meta({
        description: 'Libvirt URIs allowed for any host, `*` standing for one name label or address part (qemu+tls, qemu+tcp or qemu+ssh; path /system; no query but pkipath=/DIR on TLS).',
        flag: false,
        example: ['qemu+tls://*.hv.example/system'],
      }),
    migrateNetworks: z
      .array(checked('a network like 10.0.1.0/24', failing(parseCidr)))
      .default([])
      .meta({
        description: 'Networks a migration URI (agent.migrateUri, tcp://ADDRESS) must be in, unless hostRoutes names it.',
        flag: false,
        example: ['10.0.1.0/24'],
      }),
    metricsPort: port(0, { description: 'Port of the Prometheus endpoint (/metrics); 0 serves none.', env: 'VIRT_COHORT_MANAGER_METRICS_PORT', packaged: 9465 }),
    metricsBind: text('127.0.0.1', { description: 'Address the metrics endpoint binds.', arg: 'address' }),
  })
  .meta({ description: 'The manager (`virt-cohort manager`): rounds, leader lock, migrations.' });

export const redisSchema = z
  .strictObject({
    url: z
      .string()
      .regex(/^rediss?:\/\/[^\s]+$/, { message: 'a URL like redis://HOST:PORT[/DB] (rediss:// for TLS)' })
      .default(DEFAULT_REDIS_URL)
      .meta({
        description: "The collector's Redis: redis://HOST:PORT[/DB], or rediss:// for TLS. Credentials in the URL work (redis://:PASSWORD@HOST) but are better kept in passwordFile.",
        env: 'VIRT_COHORT_REDIS',
        arg: 'url',
      }),
    username: optionalText({ description: 'Redis ACL user (Redis 6+); none: the "default" user.', env: 'VIRT_COHORT_REDIS_USERNAME', example: 'virt-cohort' }),
    password: optionalText({
      description: 'Password (AUTH); never logged, shown as *** by `config check`. Prefer passwordFile.',
      env: 'VIRT_COHORT_REDIS_PASSWORD',
      example: 'change-me',
      secret: true,
    }),
    passwordFile: optionalFile({
      description: 'A root-only file holding the password (one line); wins over a password in the URL. Under systemd: $CREDENTIALS_DIRECTORY/redis-password.',
      env: 'VIRT_COHORT_REDIS_PASSWORD_FILE',
      example: '/etc/virt-cohort/redis-password',
    }),
    tls: z
      .strictObject({
        ca: optionalFile({ description: 'CA bundle (PEM) that signed the server certificate.', env: 'VIRT_COHORT_REDIS_TLS_CA', example: '/etc/virt-cohort/redis-ca.pem' }),
        cert: optionalFile({ description: 'Client certificate (PEM), if Redis asks for one.', env: 'VIRT_COHORT_REDIS_TLS_CERT', example: '/etc/virt-cohort/redis-client.pem' }),
        key: optionalFile({ description: "The client certificate's key (PEM).", env: 'VIRT_COHORT_REDIS_TLS_KEY', example: '/etc/virt-cohort/redis-client.key' }),
        servername: optionalText({ description: "Name in the server certificate, if not the URL's host.", env: 'VIRT_COHORT_REDIS_TLS_SERVERNAME', example: 'redis.example.org' }),
      })
      .optional()
      .meta({
        description:
          'TLS, with a rediss:// URL, or with sentinels (then this section alone turns TLS on, for the sentinels and the data nodes; `tls: {}` trusts the system CAs). Without this section the system CAs are trusted.',
      }),
    sentinels: z
      .array(z.string().regex(HOST_PORT_RE, { message: 'HOST:PORT (port 26379 if left out; [v6]:PORT for an IPv6 address)' }))
      .default([])
      .meta({
        description:
          "Redis Sentinel: the sentinels' HOST:PORT (26379 if no port), which name the primary; then leave redis.url out. The data nodes get username, password and tls as with a URL (database 0). On the command line: a,b,c.",
        env: 'VIRT_COHORT_REDIS_SENTINELS',
        arg: 'host:port,...',
        example: ['10.0.0.1:26379', '10.0.0.2:26379', '10.0.0.3:26379'],
      }),
    cluster: z
      .array(z.string().regex(HOST_PORT_RE, { message: 'HOST:PORT (port 6379 if left out; [v6]:PORT for an IPv6 address)' }))
      .default([])
      .meta({
        description:
          'Redis Cluster: some of its nodes, HOST:PORT (6379 if no port); the others are learned from them. Then leave redis.url out. Every node gets username, password and tls as with a URL; `tls` alone turns TLS on. On the command line: a,b,c.',
        env: 'VIRT_COHORT_REDIS_CLUSTER',
        arg: 'host:port,...',
        example: ['10.0.0.1:6379', '10.0.0.2:6379', '10.0.0.3:6379'],
      }),
    primaryName: name(DEFAULT_PRIMARY_NAME, {
      description: "With sentinels: the primary's name in their configuration (sentinel monitor NAME ...).",
      env: 'VIRT_COHORT_REDIS_PRIMARY',
    }),
    sentinelPasswordFile: optionalFile({
      description:
        "With sentinels: a root-only file holding the sentinels' own password (their requirepass); none: the sentinels get no password. The data nodes' credentials are never sent to the sentinels.",
      env: 'VIRT_COHORT_REDIS_SENTINEL_PASSWORD_FILE',
      example: '/etc/virt-cohort/sentinel-password',
    }),
  })
  .meta({ description: "The collector's Redis, for the agent, the manager and the commands." });

export const logSchema = z
  .strictObject({
    level: oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], 'info', { description: 'trace, debug, info, warn, error, fatal or silent.', env: 'VIRT_COHORT_LOG_LEVEL' }),
    pretty: bool(false, { description: 'Readable lines instead of JSON (for a person; journald wants JSON).', env: 'VIRT_COHORT_LOG_PRETTY' }),
  })
  .meta({ description: 'Logging of the daemons (JSON lines on stdout).' });

/** Where a must or prefer rule sends its VMs: hosts, or sites (one name or a list). */
const ruleTarget = z.strictObject({
  host: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
  site: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
});

/**
 * One operator rule (src/placement/rules.ts gives them meaning and checks them
 * against each other; docs/rules.md). VM names may use * and ? as wildcards.
 */
export const ruleSchema = z.strictObject({
  name: z.string().regex(NAME_RE, { message: "letters, digits, '_', '.' or '-' (at most 63, starting with a letter or digit)" }).optional(),
  together: z.array(z.string().min(1)).min(1).optional(),
  apart: z.array(z.string().min(1)).min(1).optional(),
  scope: z.enum(SCOPES).optional(),
  vms: z.array(z.string().min(1)).min(1).optional(),
  must: ruleTarget.optional(),
  prefer: ruleTarget.optional(),
});

export const configSchema = z.strictObject({
  agent: agentSchema,
  manager: managerSchema,
  redis: redisSchema,
  log: logSchema,
  rules: z
    .array(ruleSchema)
    .default([])
    .meta({
      description:
        'Operator rules: VMs kept together or apart by host or site (together, apart, scope), VMs that must or should run on hosts or sites (vms with must or prefer). The planner, place, migrate, drain and the manager obey them (docs/rules.md).',
      flag: false,
      example: [
        { name: 'db-apart', apart: ['db1', 'db2'], scope: 'host' },
        { name: 'web-together', together: ['web-*'], scope: 'site' },
        { vms: ['db1'], must: { site: 'a' } },
        { vms: ['web-*'], prefer: { host: ['b1', 'b2'] } },
      ],
    }),
});

export const SECTIONS = ['agent', 'manager', 'redis', 'log'] as const;

export type Config = z.output<typeof configSchema>;
export type RedisSettings = Config['redis'];
export type LogSettings = Config['log'];
/**
 * How to reach Redis besides the URL: credentials, TLS, and the sentinels
 * (which, when given, name the primary instead of the URL); file settings are
 * read when connecting.
 */
export type RedisAuth = Partial<Omit<RedisSettings, 'url'>>;

/** The configuration with nothing set. */
export const CONFIG_DEFAULTS: Config = deepFreeze(configSchema.parse(Object.fromEntries(SECTIONS.map((s) => [s, {}]))));

/** ms from a duration setting (already validated). */
export function durationMs(v: string | number): number {
  if (typeof v === 'number') return Math.round(v * 1000);
  const m = DURATION_RE.exec(v)!;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  return Math.round(Number(m[1]) * unit[m[2] ?? 's']!);
}

export function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}
