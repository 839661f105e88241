import { z } from 'zod';
import { DEFAULTS as AGENT } from '../agent/defaults.js';
import { DEFAULT_MANAGER as MANAGER } from '../manager/manager.js';

/**
 * The one configuration file, section by section. Every key has its default
 * here (taken from the modules' own defaults so that there is one source),
 * and src/config/default.yaml documents each of them; a test keeps the two in
 * step. Unknown keys are refused: a typo must not silently mean "default".
 */

export const DEFAULT_CONFIG_FILE = '/etc/virt-cohort/config.yaml';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const DURATION_RE = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/;

const name = (def: string) => z.string().regex(NAME_RE, { message: "letters, digits, '_', '.' or '-' (at most 63, starting with a letter or digit)" }).default(def);
const text = (def: string) => z.string().min(1, { message: 'a non-empty string' }).default(def);
const path = (def: string) => z.string().regex(/^\//, { message: 'an absolute path' }).default(def);
const int = (min: number, max: number, def: number) => z.number().int().min(min).max(max).default(def);
const port = (def: number) => int(0, 65535, def);
/** `30s`, `5m`, `1h`, `500ms`, or a number of seconds; kept as written, turned into ms where used. */
const duration = (defMs: number) => z.union([z.number().positive(), z.string().regex(DURATION_RE, { message: 'a duration like 30s, 5m, 1h, 500ms' })]).default(`${defMs / 1000}s`);
const optionalFile = () => z.string().regex(/^\//, { message: 'an absolute path' }).optional();

export const agentSchema = z.strictObject({
  host: name(AGENT.host),
  site: name(AGENT.site),
  libvirtUri: text(AGENT.libvirtUri),
  periodSeconds: int(1, 3600, AGENT.periodSeconds).refine((v) => 3600 % v === 0, { message: 'a whole number of seconds that divides an hour (1, 2, ... 30, ... 3600)' }),
  reconcileSeconds: int(1, 3600, AGENT.reconcileSeconds),
  socket: path(AGENT.socket),
  stateDir: path(AGENT.stateDir),
  spoolMax: int(1, 10_000_000, AGENT.spoolMax),
  retention: int(0, 100_000_000, AGENT.retention),
  sensor: z.enum(['auto', 'ebpf', 'pcap']).default(AGENT.sensor),
  pinRoot: path(AGENT.pinRoot),
  migrateUri: z.string().regex(/^$|^tcp:\/\/[^\s/]+$/, { message: 'empty, or like tcp://ADDRESS[:PORT]' }).default(AGENT.migrateUri),
  metricsPort: port(AGENT.metricsPort),
  metricsBind: text(AGENT.metricsBind),
});

export const managerSchema = z.strictObject({
  apply: z.boolean().default(MANAGER.apply),
  everyPeriods: int(1, 10_000, MANAGER.everyPeriods),
  objective: z.enum(['time', 'cost', 'resources']).default(MANAGER.objective),
  horizon: duration(MANAGER.horizonSeconds * 1000),
  maxMoves: int(1, 100_000, MANAGER.maxMoves),
  confirmRounds: int(1, 1000, MANAGER.confirmRounds),
  cooldown: duration(MANAGER.cooldownMs),
  maxPerHost: int(1, 1000, MANAGER.maxPerHost),
  maxConcurrent: int(1, 10_000, MANAGER.maxConcurrent),
  timeout: duration(MANAGER.timeoutMs),
  autoConverge: z.boolean().default(MANAGER.autoConverge),
  span: int(1, 100_000, MANAGER.span),
  coefficient: z.number().positive().default(MANAGER.coefficient),
  maxWait: duration(MANAGER.maxWaitMs),
  settle: duration(MANAGER.settleMs),
  lockTtl: duration(MANAGER.lockTtlMs),
  exclude: z.array(z.string().min(1)).default([]),
  environment: z.string().default(''),
  metricsPort: port(0),
  metricsBind: text('127.0.0.1'),
});

export const redisSchema = z.strictObject({
  url: z.string().regex(/^rediss?:\/\/[^\s]+$/, { message: 'a URL like redis://HOST:PORT[/DB] (rediss:// for TLS)' }).default('redis://127.0.0.1:6379'),
  username: z.string().min(1).optional(),
  password: z.string().min(1).optional(),
  passwordFile: optionalFile(),
  tls: z.strictObject({
    ca: optionalFile(),
    cert: optionalFile(),
    key: optionalFile(),
    servername: z.string().min(1).optional(),
  }).optional(),
});

export const logSchema = z.strictObject({
  level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  pretty: z.boolean().default(false),
});

export const configSchema = z.strictObject({
  agent: agentSchema,
  manager: managerSchema,
  redis: redisSchema,
  log: logSchema,
});

export const SECTIONS = ['agent', 'manager', 'redis', 'log'] as const;

export type Config = z.output<typeof configSchema>;
export type RedisSettings = Config['redis'];
export type LogSettings = Config['log'];

/** Keys holding secrets: shown as *** by `config check` and never logged. */
export const SECRET_KEYS = new Set(['redis.password']);

/** ms from a duration setting (already validated). */
export function durationMs(v: string | number): number {
  if (typeof v === 'number') return Math.round(v * 1000);
  const m = DURATION_RE.exec(v)!;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  return Math.round(Number(m[1]) * unit[m[2] ?? 's']!);
}
