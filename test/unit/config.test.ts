import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { agentConfig, loadConfig } from '../../src/agent/config.js';
import { ENV_VARS } from '../../src/config/env.js';
import { ConfigError, defaults, loadSettings } from '../../src/config/load.js';
import { redactConfig } from '../../src/config/redact.js';
import { commandTarget, connectionOptions, DEFAULT_REDIS_URL, redisLabel, usesTls, withoutCredentials } from '../../src/config/redis.js';
import { configSchema } from '../../src/config/schema.js';
import { packageRoot } from '../../src/paths.js';

const CLI = join(packageRoot, 'dist', 'src', 'cli', 'main.js');
const DEFAULT_YAML = join(packageRoot, 'src', 'config', 'default.yaml');
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vc-config-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, text);
  return p;
}

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `a ConfigError, not ${String(err)}`);
    assert.equal(err.exitCode, 2);
    return err.problems;
  }
  assert.fail('the configuration was accepted');
}

test('the packaged default.yaml is valid, and documents every key with its default', async () => {
  const { config } = loadSettings({ file: DEFAULT_YAML, env: {} });
  const text = await readFile(DEFAULT_YAML, 'utf8');
  const d = defaults();
  for (const section of ['agent', 'manager', 'redis', 'log'] as const) {
    const shape = (configSchema.shape[section] as unknown as { shape: Record<string, unknown> }).shape;
    for (const key of Object.keys(shape)) {
      assert.match(text, new RegExp(`^\\s*#?\\s*${key}:`, 'm'), `${section}.${key} is documented in default.yaml`);
      const value = (config[section] as Record<string, unknown>)[key];
      const def = (d[section] as Record<string, unknown>)[key];
      // The metrics ports are the one place the packaged file differs from the built-in defaults.
      if (key === 'metricsPort') assert.equal(value, section === 'agent' ? 9464 : 9465);
      else if (key !== 'host') assert.deepEqual(value, def, `${section}.${key}: default.yaml shows the built-in default`);
    }
  }
  for (const sub of ['ca', 'cert', 'key', 'servername']) assert.match(text, new RegExp(`#\\s*${sub}:`), `redis.tls.${sub} is documented`);
  for (const v of ENV_VARS) assert.ok(text.includes(v.name), `${v.name} is mentioned in default.yaml`);
});

test('bad YAML: the line, and what to do', async () => {
  const f = await file('broken.yaml', 'agent:\n  site: a\n  host: [oops\nredis:\n  url: redis://x\n');
  const [p, ...rest] = problems(() => loadSettings({ file: f, env: {} }));
  assert.equal(rest.length, 0);
  assert.match(p!, new RegExp(`^${f}:\\d+:\\d+: not valid YAML`));
  assert.match(p!, /fix the syntax/);
});

test('an unknown key is refused with its line and the likely key', async () => {
  const f = await file('unknown.yaml', 'agent:\n  site: a\n  perodSeconds: 60\nmanager:\n  apply: false\n');
  const [p] = problems(() => loadSettings({ file: f, env: {} }));
  assert.match(p!, new RegExp(`^${f}:3:3: unknown key 'agent.perodSeconds': did you mean 'periodSeconds'\\?`));
  // A key put at the top level instead of in its section.
  const g = await file('flat.yaml', '# old flat form\nspoolMax: 10\n');
  const [q] = problems(() => loadSettings({ file: g, env: {} }));
  assert.match(q!, /:2:1: unknown key 'spoolMax': settings go in sections: move it under 'agent:'/);
  const h = await file('section.yaml', 'agnet:\n  site: a\n');
  assert.match(problems(() => loadSettings({ file: h, env: {} }))[0]!, /:1:1: unknown key 'agnet': did you mean 'agent'\?/);
});

test('a wrong type names the key, the line and the fix; every problem is listed', async () => {
  const f = await file(
    'types.yaml',
    ['agent:', '  periodSeconds: "30s"', '  sensor: bpf', 'manager:', '  apply: yes', '  cooldown: ten minutes', '  exclude: vm1', '', 'log:', '  level: loud'].join('\n'),
  );
  const ps = problems(() => loadSettings({ file: f, env: {} }));
  assert.equal(ps.length, 6, ps.join('\n'));
  const find = (re: RegExp) => ps.find((p) => re.test(p)) ?? assert.fail(`no problem matches ${re}:\n${ps.join('\n')}`);
  assert.match(find(/periodSeconds/), new RegExp(`^${f}:2:3: agent.periodSeconds must be a number, not "30s": write e.g. 'periodSeconds: 30' \\(the default\\)`));
  assert.match(find(/sensor/), /:3:3: agent.sensor must be one of auto, ebpf, pcap \(got "bpf"\)/);
  assert.match(find(/apply/), /:5:3: manager.apply must be a boolean, not "yes"/);
  assert.match(find(/cooldown/), /:6:3: manager.cooldown must be a duration like 30s/);
  assert.match(find(/exclude/), /:7:3: manager.exclude must be a list/);
  assert.match(find(/level/), /:10:3: log.level must be one of trace, debug/);
  // Values that pass types but not sense.
  const g = await file('range.yaml', 'agent:\n  periodSeconds: 7\n  metricsPort: 70000\n');
  const qs = problems(() => loadSettings({ file: g, env: {} }));
  assert.ok(
    qs.some((q) => /:2:3: agent.periodSeconds must be a whole number of seconds that divides an hour/.test(q)),
    qs.join('\n'),
  );
  assert.ok(
    qs.some((q) => /:3:3: agent.metricsPort must be at most 65535/.test(q)),
    qs.join('\n'),
  );
  // Settings that contradict each other.
  const h = await file('tls.yaml', `redis:\n  url: redis://r:6379\n  tls:\n    ca: ${join(dir, 'nope.pem')}\n`);
  const rs = problems(() => loadSettings({ file: h, env: {} }));
  assert.ok(
    rs.some((r) => /:3:3: redis.tls is set but redis.url is not rediss:\/\//.test(r)),
    rs.join('\n'),
  );
  assert.ok(
    rs.some((r) => /:4:5: redis.tls.ca names .*nope.pem, which does not exist: create it, or correct the path/.test(r)),
    rs.join('\n'),
  );
});

test('precedence: defaults < file < environment < flags, each error naming its source', async () => {
  const f = await file('layers.yaml', 'agent:\n  site: from-file\n  periodSeconds: 60\n  spoolMax: 5\nredis:\n  url: redis://file:6379\nlog:\n  level: debug\n');
  const env = { VIRT_COHORT_REDIS: 'redis://env:6379', VIRT_COHORT_SITE: 'from-env', VIRT_COHORT_LOG_PRETTY: 'true' };
  const {
    config,
    file: read,
    overrides,
  } = loadSettings({
    file: f,
    env,
    flags: [
      { path: 'agent.site', flag: '--site', value: 'from-flag' },
      { path: 'agent.retention', flag: '--retention', value: undefined },
    ],
  });
  assert.equal(read, f);
  assert.equal(config.agent.site, 'from-flag');
  assert.equal(config.redis.url, 'redis://env:6379');
  assert.equal(config.agent.periodSeconds, 60);
  assert.equal(config.agent.spoolMax, 5);
  assert.equal(config.agent.retention, 0, 'a flag not given leaves the default');
  assert.equal(config.agent.socket, '/run/virt-cohort/agent.sock');
  assert.equal(config.log.level, 'debug');
  assert.equal(config.log.pretty, true);
  assert.deepEqual(overrides, ['redis.url ← VIRT_COHORT_REDIS', 'agent.site ← VIRT_COHORT_SITE', 'log.pretty ← VIRT_COHORT_LOG_PRETTY', 'agent.site ← --site']);
  assert.ok(Object.isFrozen(config) && Object.isFrozen(config.agent), 'frozen');
  // $VIRT_COHORT_CONFIG names the file when no --config does; false reads none.
  assert.equal(loadSettings({ env: { VIRT_COHORT_CONFIG: f } }).config.agent.site, 'from-file');
  assert.equal(loadSettings({ file: false, env: { VIRT_COHORT_CONFIG: f } }).config.agent.site, 'default');
  // Errors say which layer gave the bad value.
  assert.match(
    problems(() => loadSettings({ file: f, env: { VIRT_COHORT_AGENT_METRICS_PORT: 'abc' } }))[0]!,
    /^environment VIRT_COHORT_AGENT_METRICS_PORT: agent.metricsPort must be a number, not "abc": set e.g. VIRT_COHORT_AGENT_METRICS_PORT=0/,
  );
  assert.match(
    problems(() => loadSettings({ file: f, env: {}, flags: [{ path: 'agent.periodSeconds', flag: '--period', value: 7 }] }))[0]!,
    /^option --period: agent.periodSeconds must be a whole number of seconds that divides an hour .*give e.g. --period 30/,
  );
  // The flat API the benchmark uses still works, through the same layers.
  const cfg = loadConfig(f, { host: 'bench', redis: 'redis://:pw@flag:6380/2', periodSeconds: 5 });
  assert.equal(cfg.host, 'bench');
  assert.equal(cfg.site, 'from-file');
  assert.equal(cfg.periodSeconds, 5);
  assert.equal(cfg.redis, 'redis://flag:6380/2', 'the URL the agent logs carries no password');
  assert.deepEqual(cfg.redisAuth, { password: 'pw' });
});

test('Redis credentials: the settings win over the URL; TLS files are read for rediss://', async () => {
  const base = defaults().redis;
  assert.deepEqual(withoutCredentials({ ...base, url: 'redis://u:p%40ss@h:1/3' }), { url: 'redis://h:1/3', auth: { username: 'u', password: 'p@ss' } });
  assert.deepEqual(withoutCredentials({ ...base, url: 'redis://:old@h', password: 'new' }).auth, { password: 'new' });
  const pw = await file('pw', 'from-file\n');
  assert.deepEqual(withoutCredentials({ ...base, url: 'redis://:old@h', passwordFile: pw }).auth, { passwordFile: pw });
  const o = connectionOptions('redis://h:6390/4', { passwordFile: pw, username: 'vc' });
  assert.deepEqual(
    { host: o.host, port: o.port, db: o.db, username: o.username, password: o.password, tls: o.tls },
    { host: 'h', port: 6390, db: 4, username: 'vc', password: 'from-file', tls: undefined },
  );
  const ca = await file('ca.pem', 'PEM');
  const t = connectionOptions('rediss://redis.example.org', { tls: { ca } });
  assert.deepEqual(t.tls, { ca: 'PEM', servername: 'redis.example.org' });
  assert.equal(t.port, 6379);
  assert.throws(() => connectionOptions('redis://h', { passwordFile: join(dir, 'missing') }), /cannot read redis.passwordFile .*missing \(ENOENT\): create it, or correct the path/);
});

test('config check prints the effective configuration with secrets redacted, and exits 2 on errors', async () => {
  const f = await file('secret.yaml', 'redis:\n  url: redis://:url-secret@r:6379\n  password: hunter2-secret\nagent:\n  site: s1\n');
  const c = redactConfig(loadSettings({ file: f, env: {} }).config);
  assert.equal(c.redis.password, '***');
  assert.equal(c.redis.url, 'redis://:***@r:6379');
  const run = promisify(execFile);
  const env = { ...process.env, VIRT_COHORT_REDIS_PASSWORD: undefined, VIRT_COHORT_REDIS: undefined, VIRT_COHORT_CONFIG: undefined };
  const ok = await run(process.execPath, [CLI, 'config', 'check', f], { env });
  assert.match(ok.stdout, new RegExp(`^# ${f}: valid`));
  assert.match(ok.stdout, /site: s1/);
  assert.match(ok.stdout, /password: "\*\*\*"|password: '\*\*\*'|password: \*\*\*/);
  assert.doesNotMatch(ok.stdout + ok.stderr, /hunter2|url-secret/);
  const viaEnv = await run(process.execPath, [CLI, 'config', 'check', '--json', f], { env: { ...env, VIRT_COHORT_REDIS_PASSWORD: 'env-secret' } });
  const j = JSON.parse(viaEnv.stdout) as { config: { redis: { password: string } }; overrides: string[] };
  assert.equal(j.config.redis.password, '***');
  assert.deepEqual(j.overrides, ['redis.password ← VIRT_COHORT_REDIS_PASSWORD']);
  assert.doesNotMatch(viaEnv.stdout, /env-secret/);
  const bad = await file('bad.yaml', 'redis:\n  password: 12345\n  urll: x\n');
  const failed = await run(process.execPath, [CLI, 'config', 'check', bad], { env }).then(
    () => assert.fail('exit 0'),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
  assert.equal(failed.code, 2);
  assert.match(failed.stderr, /:2:3: redis.password must be a string, not \*\*\*/);
  assert.match(failed.stderr, /:3:3: unknown key 'redis.urll': did you mean 'url'\?/);
  assert.doesNotMatch(failed.stderr, /12345/);
});

test('the agent section becomes the AgentConfig the agent runs with', () => {
  const cfg = agentConfig(loadSettings({ file: false, env: { VIRT_COHORT_REDIS_PASSWORD: 'x' } }).config);
  assert.equal(cfg.redis, 'redis://127.0.0.1:6379');
  assert.deepEqual(cfg.redisAuth, { password: 'x' });
  assert.equal(cfg.metricsPort, 0, 'no metrics endpoint unless asked (the lab)');
  assert.ok(Object.isFrozen(cfg));
});

test("commands: the file's credentials go with the file's Redis only; the environment's go with any", async () => {
  const f = await file('cmd.yaml', 'redis:\n  url: rediss://collector:6380\n  password: file-pw\n');
  const env = { VIRT_COHORT_CONFIG: f };
  assert.deepEqual(commandTarget(DEFAULT_REDIS_URL, env), { url: 'rediss://collector:6380', auth: { password: 'file-pw' } });
  assert.deepEqual(commandTarget('rediss://collector:6380', env), { url: 'rediss://collector:6380', auth: { password: 'file-pw' } });
  assert.deepEqual(commandTarget('redis://elsewhere:6379', env), { url: 'redis://elsewhere:6379' });
  assert.deepEqual(commandTarget('redis://elsewhere:6379', { ...env, VIRT_COHORT_REDIS_PASSWORD: 'env-pw' }), { url: 'redis://elsewhere:6379', auth: { password: 'env-pw' } });
  assert.deepEqual(commandTarget('redis://:own@elsewhere:6379', { ...env, VIRT_COHORT_REDIS_PASSWORD: 'env-pw' }), { url: 'redis://:own@elsewhere:6379' });
});

test('Sentinel: the sentinels and the primary name from the file, the environment or the flags; ioredis options for them, with the data credentials and TLS apart from the sentinels', async () => {
  const pw = await file('data-pw', 'data-secret\n');
  const spw = await file('sentinel-pw', 'sentinel-secret\n');
  const ca = await file('ha-ca.pem', 'PEM');
  const f = await file(
    'sentinel.yaml',
    `redis:\n  sentinels: [10.0.0.1, '10.0.0.2:26380', '[fd00::3]:26381']\n  primaryName: vc-main\n  username: vc\n  passwordFile: ${pw}\n  sentinelPasswordFile: ${spw}\n  tls: { ca: ${ca} }\n`,
  );
  const { config } = loadSettings({ file: f, env: {} });
  const cfg = agentConfig(config);
  assert.equal(cfg.redis, DEFAULT_REDIS_URL, 'no URL: the sentinels name the primary');
  assert.deepEqual(cfg.redisAuth?.sentinels, ['10.0.0.1', '10.0.0.2:26380', '[fd00::3]:26381']);
  assert.equal(cfg.redisAuth?.primaryName, 'vc-main');
  assert.equal(redisLabel(cfg.redis, cfg.redisAuth), "primary 'vc-main' of sentinels 10.0.0.1,10.0.0.2:26380,[fd00::3]:26381");
  assert.equal(usesTls(cfg.redis, cfg.redisAuth), true, 'with sentinels, the tls section alone turns TLS on');
  const o = connectionOptions(cfg.redis, cfg.redisAuth);
  assert.deepEqual(o.sentinels, [
    { host: '10.0.0.1', port: 26379 },
    { host: '10.0.0.2', port: 26380 },
    { host: 'fd00::3', port: 26381 },
  ]);
  assert.equal(o.name, 'vc-main');
  assert.equal(o.role, 'master');
  assert.equal(o.username, 'vc');
  assert.equal(o.password, 'data-secret');
  assert.equal(o.sentinelPassword, 'sentinel-secret', "the sentinels get their own password, never the data nodes'");
  assert.equal(o.sentinelUsername, undefined);
  assert.deepEqual(o.tls, { ca: 'PEM' });
  assert.deepEqual(o.sentinelTLS, { ca: 'PEM' });
  assert.equal(o.enableTLSForSentinelMode, true);

  const env = loadSettings({ file: false, env: { VIRT_COHORT_REDIS_SENTINELS: 's1:1, s2:2', VIRT_COHORT_REDIS_PRIMARY: 'p1' } }).config.redis;
  assert.deepEqual([env.sentinels, env.primaryName], [['s1:1', 's2:2'], 'p1']);
  const flags = loadSettings({ file: false, env: {}, flags: [{ path: 'redis.sentinels', flag: '--redis-sentinels', value: ['s3'] }] }).config.redis;
  assert.deepEqual([flags.sentinels, flags.primaryName], [['s3'], 'mymaster']);
  assert.equal(connectionOptions(DEFAULT_REDIS_URL, { sentinels: ['s3'] }).tls, undefined, 'no tls section: no TLS');
});

test('Cluster: from the file, the environment and flags; mixed with redis.url or sentinels, refused with the fix; a bad node', async () => {
  const env = loadSettings({ file: false, env: { VIRT_COHORT_REDIS_CLUSTER: 'n1:7000, n2' } }).config.redis;
  assert.deepEqual(env.cluster, ['n1:7000', 'n2']);
  const flags = loadSettings({ file: false, env: {}, flags: [{ path: 'redis.cluster', flag: '--redis-cluster', value: ['n3:7001'] }] }).config.redis;
  assert.deepEqual(flags.cluster, ['n3:7001']);
  const f = await file('mixed-cluster.yaml', 'redis:\n  url: redis://one:6379\n  cluster: [a:7000]\n');
  const rs = problems(() => loadSettings({ file: f, env: {} }));
  assert.ok(
    rs.some((r) =>
      /mixed-cluster\.yaml:2:3: redis\.url \(redis:\/\/one:6379\) and redis\.cluster are both set: .*: remove redis\.url \(or VIRT_COHORT_REDIS, --redis\) and keep redis\.cluster/.test(r),
    ),
    rs.join('\n'),
  );
  const both = problems(() => loadSettings({ file: false, env: { VIRT_COHORT_REDIS_CLUSTER: 'a', VIRT_COHORT_REDIS_SENTINELS: 'b' } }));
  assert.ok(
    both.some((r) => /redis\.cluster and redis\.sentinels are both set: a Redis Cluster fails over by itself/.test(r)),
    both.join('\n'),
  );
  const bad = problems(() => loadSettings({ file: false, env: { VIRT_COHORT_REDIS_CLUSTER: 'a:b:c' } }));
  assert.ok(
    bad.some((r) => /redis\.cluster\.0 must be HOST:PORT/.test(r)),
    bad.join('\n'),
  );
});

test('Sentinel: mixed with redis.url, refused with the fix; a bad sentinel, a sentinel password without sentinels', async () => {
  const f = await file('mixed.yaml', 'redis:\n  url: redis://one:6379\n  sentinels: [a:26379]\n');
  const rs = problems(() => loadSettings({ file: f, env: {} }));
  assert.ok(
    rs.some((r) => /mixed\.yaml:2:3: redis\.url \(redis:\/\/one:6379\) and redis\.sentinels are both set: .*: remove redis\.url \(or VIRT_COHORT_REDIS, --redis\)/.test(r)),
    rs.join('\n'),
  );
  const viaEnv = problems(() => loadSettings({ file: false, env: { VIRT_COHORT_REDIS: 'redis://one:6379', VIRT_COHORT_REDIS_SENTINELS: 'a' } }));
  assert.ok(
    viaEnv.some((r) => /^environment VIRT_COHORT_REDIS: redis\.url .* and redis\.sentinels are both set/.test(r)),
    viaEnv.join('\n'),
  );
  const bad = problems(() => loadSettings({ file: false, env: { VIRT_COHORT_REDIS_SENTINELS: 'a:b:c' } }));
  assert.ok(
    bad.some((r) => /redis\.sentinels\.0 must be HOST:PORT/.test(r)),
    bad.join('\n'),
  );
  const spw = await file('spw', 'x');
  const lone = problems(() => loadSettings({ file: false, env: { VIRT_COHORT_REDIS_SENTINEL_PASSWORD_FILE: spw } }));
  assert.ok(
    lone.some((r) => /redis\.sentinelPasswordFile is set but there are no redis\.sentinels/.test(r)),
    lone.join('\n'),
  );
  // The URL's default with sentinels is not a mix: the packaged file writes it.
  assert.deepEqual(loadSettings({ file: false, env: { VIRT_COHORT_REDIS: DEFAULT_REDIS_URL, VIRT_COHORT_REDIS_SENTINELS: 'a' } }).config.redis.sentinels, ['a']);
});

test('commands with sentinels: --redis left to its default goes through the sentinels; another URL goes there alone, without them', async () => {
  const f = await file('cmd-sentinel.yaml', 'redis:\n  sentinels: [a:26379, b:26379]\n  primaryName: p\n  password: pw\n');
  const env = { VIRT_COHORT_CONFIG: f };
  assert.deepEqual(commandTarget(DEFAULT_REDIS_URL, env), { url: DEFAULT_REDIS_URL, auth: { password: 'pw', sentinels: ['a:26379', 'b:26379'], primaryName: 'p' } });
  assert.deepEqual(commandTarget('redis://elsewhere:6379', env), { url: 'redis://elsewhere:6379' });
  assert.deepEqual(commandTarget('redis://127.0.0.1:6379/1', env), { url: 'redis://127.0.0.1:6379/1' });
});
