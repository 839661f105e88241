import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { UserError } from '../util/errors.js';
import { checkPeriodLength } from './period.js';

/** Everything the agent reads from its configuration, validated once and frozen. */
export interface AgentConfig {
  /** Name of this physical host in the registry (default: the machine's hostname). */
  host: string;
  /** Site (cloud, grid, rack) the host belongs to. Default "default". */
  site: string;
  /** libvirt URI of the local hypervisor. Default qemu:///system. */
  libvirtUri: string;
  /** Redis of the collector. Default redis://127.0.0.1:6379. */
  redis: string;
  /** Period length in seconds; divides an hour. Default 30 (the seed's). */
  periodSeconds: number;
  /** Seconds between reconciles with libvirt (and heartbeats in the host registry). Default 10. */
  reconcileSeconds: number;
  /** Unix socket the libvirt hook writes to (root only). Default /run/virt-cohort/agent.sock. */
  socket: string;
  /** Where reports wait while Redis is unreachable, and the VM id table. Default /var/lib/virt-cohort. */
  stateDir: string;
  /** Most reports kept on disk while Redis is down; the oldest are dropped beyond (loudly). Default 2880 (a day of 30 s periods). */
  spoolMax: number;
  /** Periods kept in Redis; 0 keeps all (the seed's default). */
  retention: number;
  /** Sensor backend: auto (eBPF, else libpcap), ebpf, pcap. Default auto. */
  sensor: 'auto' | 'ebpf' | 'pcap';
  /** Where the eBPF sensor pins its maps. Default /sys/fs/bpf/virt-cohort. */
  pinRoot: string;
  /** Where migrations into this host send memory (e.g. tcp://10.0.1.5), when not the libvirt URI's host. Default: none. */
  migrateUri: string;
}

export const DEFAULTS: AgentConfig = Object.freeze({
  host: hostname(),
  site: 'default',
  libvirtUri: 'qemu:///system',
  redis: 'redis://127.0.0.1:6379',
  periodSeconds: 30,
  reconcileSeconds: 10,
  socket: '/run/virt-cohort/agent.sock',
  stateDir: '/var/lib/virt-cohort',
  spoolMax: 2880,
  retention: 0,
  sensor: 'auto',
  pinRoot: '/sys/fs/bpf/virt-cohort',
  migrateUri: '',
});

/**
 * Node flags the agent runs with (lab, packaged service). A small young
 * generation: the agent allocates little per period, and V8's default 16 MB
 * semi-spaces alone put 1,000 taps over 100 MB (README, "Measured").
 */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=1'];

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** Defaults, then the JSON file (if any), then explicit options; every key checked. */
export function loadConfig(file: string | undefined, overrides: Partial<Record<keyof AgentConfig, unknown>>): AgentConfig {
  let fromFile: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UserError(`cannot read the configuration ${file} (${(err as Error).message})`);
    }
    try {
      fromFile = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new UserError(`${file} is not valid JSON (${(err as Error).message}): fix it, or start without --config`);
    }
    if (typeof fromFile !== 'object' || fromFile === null || Array.isArray(fromFile)) throw new UserError(`${file} must hold one JSON object`);
  }
  const merged: Record<string, unknown> = { ...DEFAULTS };
  for (const [where, src] of [[file ?? '', fromFile], ['option', overrides]] as const) {
    for (const [k, v] of Object.entries(src)) {
      if (v === undefined) continue;
      if (!(k in DEFAULTS)) throw new UserError(`unknown setting '${k}'${where ? ` in ${where}` : ''}; known: ${Object.keys(DEFAULTS).join(', ')}`);
      merged[k] = v;
    }
  }
  return Object.freeze(check(merged));
}

function check(c: Record<string, unknown>): AgentConfig {
  const str = (k: string) => {
    if (typeof c[k] !== 'string' || c[k] === '') throw new UserError(`setting '${k}' must be a non-empty string (got ${JSON.stringify(c[k])})`);
    return c[k] as string;
  };
  const int = (k: string, min: number, max: number) => {
    const v = typeof c[k] === 'string' ? Number(c[k]) : c[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new UserError(`setting '${k}' must be a whole number from ${min} to ${max} (got ${JSON.stringify(c[k])})`);
    }
    return v;
  };
  const host = str('host');
  const site = str('site');
  for (const [k, v] of [['host', host], ['site', site]]) {
    if (!NAME_RE.test(v!)) throw new UserError(`setting '${k}' must be letters, digits, '_', '.' or '-' (got '${v}')`);
  }
  let periodSeconds: number;
  try {
    periodSeconds = checkPeriodLength(int('periodSeconds', 1, 3600));
  } catch (err) {
    throw new UserError((err as Error).message);
  }
  const redis = str('redis');
  if (!/^rediss?:\/\//.test(redis)) throw new UserError(`setting 'redis' must be a URL like redis://HOST:PORT (got '${redis}')`);
  const sensor = str('sensor');
  if (!['auto', 'ebpf', 'pcap'].includes(sensor)) throw new UserError(`setting 'sensor' must be auto, ebpf or pcap (got '${sensor}')`);
  return {
    host, site, redis, periodSeconds,
    libvirtUri: str('libvirtUri'),
    reconcileSeconds: int('reconcileSeconds', 1, 3600),
    socket: str('socket'),
    stateDir: str('stateDir'),
    spoolMax: int('spoolMax', 1, 10_000_000),
    retention: int('retention', 0, 100_000_000),
    sensor: sensor as AgentConfig['sensor'],
    pinRoot: str('pinRoot'),
    migrateUri: checkMigrateUri(c.migrateUri),
  };
}

function checkMigrateUri(v: unknown): string {
  if (v === '' ) return '';
  if (typeof v !== 'string' || !/^tcp:\/\/[^\s/]+$/.test(v)) throw new UserError(`setting 'migrateUri' must be empty or like tcp://ADDRESS[:PORT] (got ${JSON.stringify(v)})`);
  return v;
}
