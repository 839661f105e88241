import { CONFIG_DEFAULTS, durationMs } from '../../src/config/schema.js';
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Command } from 'commander';
import { DEFAULTS } from '../../src/agent/config.js';
import { agentCommand } from '../../src/cli/agent.js';
import { doctorCommand } from '../../src/cli/doctor.js';
import { managerCommand } from '../../src/cli/manager.js';
import { settingFlags, settingOptions } from '../../src/cli/settings.js';
import { ENV_VARS } from '../../src/config/env.js';
import { COMMAND_SETTINGS, commandSettings, flagName, type SettingsCommand } from '../../src/config/flags.js';
import { GENERATED } from '../../src/config/generated.js';
import { SETTINGS } from '../../src/config/settings.js';
import { DEFAULT_MANAGER } from '../../src/manager/manager.js';
import { packageRoot } from '../../src/paths.js';

test('the files generated from the schema are up to date', async () => {
  for (const g of GENERATED) {
    const committed = await readFile(join(packageRoot, g.path), 'utf8').catch(() => '');
    assert.ok(committed === g.render(), `${g.path} is stale: run \`npm run gen\` (it writes it from src/config/schema.ts) and commit it`);
  }
});

test('every key is documented; flags and variables name one key each', () => {
  for (const s of SETTINGS) assert.ok(s.description.endsWith('.'), `${s.path} has a description (a sentence)`);
  const envs = ENV_VARS.map((v) => v.name);
  assert.equal(new Set(envs).size, envs.length, 'one variable per key');
  for (const c of Object.keys(COMMAND_SETTINGS) as SettingsCommand[]) {
    const flags = commandSettings(c).map((s) => flagName(s.path));
    assert.equal(new Set(flags).size, flags.length, `${c}: one flag per key`);
  }
});

test('the commands keep their flags', () => {
  const longs = (c: Command) => c.options.map((o) => o.long).sort();
  const sorted = (s: string) => s.split(' ').sort();
  assert.deepEqual(
    longs(agentCommand()),
    sorted(
      '--config --no-config --host --site --libvirt-uri --advertise-uri --redis --redis-password-file --redis-sentinels --redis-primary --redis-cluster --period --reconcile ' +
        '--socket --state-dir --spool-max --retention --zset-periods --sensor --pin-root --migrate-uri --metrics --metrics-bind --pretty',
    ),
  );
  assert.deepEqual(
    longs(managerCommand()),
    sorted(
      '--lab --config --no-config --pretty --apply --every --objective --method --env --horizon --max-moves --confirm ' +
        '--cooldown --external-hold --evacuate-silent --quota-margin --max-per-host --max-concurrent --timeout --encrypt --auto-converge --assume-shared-storage --span --exclude --cpu-overcommit --reserve-memory --once --json --metrics --metrics-bind --redis --redis-sentinels --redis-primary --redis-cluster',
    ),
  );
  assert.deepEqual(
    longs(doctorCommand()),
    sorted('--config --no-config --libvirt-uri --hooks-dir --pin-root --redis --redis-sentinels --redis-primary --redis-cluster --state-dir --socket --manager --json'),
  );
});

test('a flag sets its key, typed; a flag not given sets nothing', () => {
  const given = (command: SettingsCommand, args: string[]) => {
    const c = settingOptions(new Command('x').exitOverride().configureOutput({ writeErr: () => undefined }), command).parse(args, { from: 'user' });
    return Object.fromEntries(
      settingFlags(c.opts(), command)
        .filter((f) => f.value !== undefined)
        .map((f) => [`${f.flag} ${f.path}`, f.value]),
    );
  };
  assert.deepEqual(given('agent', ['--period', '60', '--redis', 'redis://r:1', '--metrics', '9', '--pretty', '--state-dir', '/s']), {
    '--period agent.periodSeconds': 60,
    '--redis redis.url': 'redis://r:1',
    '--metrics agent.metricsPort': 9,
    '--pretty log.pretty': true,
    '--state-dir agent.stateDir': '/s',
  });
  assert.deepEqual(given('manager', ['--exclude', 'a, b,', '--every', '3', '--env', '/e.json', '--apply', '--horizon', '5m']), {
    '--exclude manager.exclude': ['a', 'b'],
    '--every manager.everyPeriods': 3,
    '--env manager.environment': '/e.json',
    '--apply manager.apply': true,
    '--horizon manager.horizon': '5m',
  });
  assert.deepEqual(given('doctor', []), {});
  assert.throws(() => given('agent', ['--period', 'x']), /'x' is not an integer/);
});

test('the modules keep their defaults', () => {
  assert.deepEqual(
    { ...DEFAULT_MANAGER },
    {
      apply: false,
      everyPeriods: 2,
      settleMs: 2000,
      objective: 'time',
      method: 'cohesive',
      horizonSeconds: 3600,
      maxMoves: 5,
      confirmRounds: 2,
      cooldownMs: 1_200_000,
      externalHoldMs: 1_800_000,
      evacuateSilentMs: 600_000,
      quotaMarginMs: 300_000,
      encrypt: 'between-sites',
      events: true,
      maxPerHost: 1,
      maxConcurrent: 2,
      timeoutMs: 300_000,
      autoConverge: false,
      live: true,
      assumeSharedStorage: false,
      lockTtlMs: 15_000,
      span: 8,
      coefficient: 1,
      maxWaitMs: 5000,
      exclude: [],
      hostRoutes: {},
      hostUris: [],
      migrateNetworks: [], // no route is trusted until configured (docs/security.md)
      cpuOvercommit: 4, // without an environment file, as Nova's defaults
      reserveMemory: 512,
    },
  );
  const { host, ...agent } = DEFAULTS;
  assert.ok(host);
  assert.deepEqual(agent, {
    site: 'default',
    libvirtUri: 'qemu:///system',
    advertiseUri: '',
    redis: 'redis://127.0.0.1:6379',
    periodSeconds: 30,
    reconcileSeconds: 10,
    socket: '/run/virt-cohort/agent.sock',
    stateDir: '/var/lib/virt-cohort',
    spoolMax: 2880,
    retention: 0,
    zsetPeriods: 5,
    sensor: 'auto',
    pinRoot: '/sys/fs/bpf/virt-cohort',
    migrateUri: '',
    metricsPort: 0,
    metricsBind: '127.0.0.1',
  });
});

test("the manager's unit waits on stop for longer than a migration may run (it is aborted and recorded by then)", () => {
  const unit = readFileSync(join(packageRoot, 'src/package/virt-cohort-manager.service'), 'utf8');
  const stop = Number(/^TimeoutStopSec=(\d+)s$/m.exec(unit)?.[1]);
  assert.ok(stop * 1000 >= durationMs(CONFIG_DEFAULTS.manager.timeout) + 60_000, `TimeoutStopSec=${stop}s against a migration timeout of ${CONFIG_DEFAULTS.manager.timeout}`);
});
