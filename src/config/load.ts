import { existsSync, readFileSync, statSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { UserError } from '../util/errors.js';
import { ENV_VARS, envValue } from './env.js';
import { CONFIG_DEFAULTS, configSchema, deepFreeze, DEFAULT_CONFIG_FILE, DEFAULT_REDIS_URL, SECTIONS, type Config } from './schema.js';
import { SECRET_KEYS } from './settings.js';

type Path = (string | number)[];
type Tree = Record<string, unknown>;

/** A value given on the command line, with the flag that gave it (for messages). */
export interface FlagValue {
  path: string;
  flag: string;
  value: unknown;
}

export interface LoadOptions {
  /** A file; undefined: $VIRT_COHORT_CONFIG, else /etc/virt-cohort/config.yaml if it exists; false: none. */
  file?: string | false | undefined;
  flags?: FlagValue[];
  env?: NodeJS.ProcessEnv;
}

export interface Loaded {
  config: Config;
  /** The file read, if any. */
  file?: string;
  /** Which keys the environment and the flags set ("redis.url ← VIRT_COHORT_REDIS"). */
  overrides: string[];
}

/** Every problem of a configuration, one line each: where, which key, what is wrong, what to do. */
export class ConfigError extends UserError {
  override name = 'ConfigError';
  constructor(
    readonly problems: string[],
    readonly file?: string,
  ) {
    super(problems.length === 1 ? `invalid configuration: ${problems[0]}` : `invalid configuration (${problems.length} problems):\n  ${problems.join('\n  ')}`);
  }
}

interface Layer {
  data: Tree;
  where(path: Path): string;
  /** How to give `value` for `path` in this layer. */
  example(path: Path, value: string): string;
}

/** Which file is read when none is named: $VIRT_COHORT_CONFIG, else the default path if it exists. */
export function configFile(file: string | false | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (file === false) return undefined;
  if (file) return file;
  if (env.VIRT_COHORT_CONFIG) return env.VIRT_COHORT_CONFIG;
  return existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined;
}

/**
 * Defaults < file < environment < flags, validated once as a whole; the
 * result is frozen. Throws ConfigError naming, for each problem, the file and
 * line (or the variable, or the flag) that set the value.
 */
export function loadSettings(opts: LoadOptions = {}): Loaded {
  const env = opts.env ?? process.env;
  const file = configFile(opts.file, env);
  const layers: Layer[] = [];
  if (file) layers.push(fileLayer(file));
  const overrides: string[] = [];
  const envData: Tree = {};
  const envNames = new Map<string, string>();
  for (const v of ENV_VARS) {
    const raw = env[v.name];
    if (raw === undefined || raw === '') continue;
    setIn(envData, v.path.split('.'), envValue(raw, v.type));
    envNames.set(v.path, v.name);
    overrides.push(`${v.path} ← ${v.name}`);
  }
  layers.push({ data: envData, where: (p) => `environment ${envNames.get(p.join('.')) ?? '?'}`, example: (p, v) => `set e.g. ${envNames.get(p.join('.'))}=${v} (the default), or unset it` });
  const flagData: Tree = {};
  const flagNames = new Map<string, string>();
  for (const f of opts.flags ?? []) {
    if (f.value === undefined) continue;
    setIn(flagData, f.path.split('.'), f.value);
    flagNames.set(f.path, f.flag);
    overrides.push(`${f.path} ← ${f.flag}`);
  }
  layers.push({
    data: flagData,
    where: (p) => `option ${flagNames.get(p.join('.')) ?? '?'}`,
    example: (p, v) => `give e.g. ${flagNames.get(p.join('.'))} ${v} (the default), or leave the option out`,
  });

  const merged: Tree = Object.fromEntries(SECTIONS.map((s) => [s, {}]));
  for (const l of layers) merge(merged, l.data);
  const parsed = configSchema.safeParse(merged);
  const problems: string[] = [];
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(...describeIssue(issue, merged, layers));
  } else {
    for (const [path, message, fix] of crossChecks(parsed.data)) problems.push(locate(path, layers, message, fix));
  }
  if (problems.length) throw new ConfigError(problems, file);
  return { config: deepFreeze(parsed.data!), ...(file ? { file } : {}), overrides };
}

function fileLayer(file: string): Layer {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ConfigError([`${file}: cannot read it (${e.code ?? e.message}): fix the path (--config or VIRT_COHORT_CONFIG), or start without a file`], file);
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        return `${file}${pos ? `:${pos.line}:${pos.col}` : ''}: not valid YAML (${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}): fix the syntax there (indentation, a missing ':' or an unclosed quote)`;
      }),
      file,
    );
  }
  const data = doc.toJS() as unknown;
  if (data !== null && data !== undefined && (typeof data !== 'object' || Array.isArray(data))) {
    throw new ConfigError([`${file}:1: the file must be a mapping of sections (${SECTIONS.join(', ')}), not a ${Array.isArray(data) ? 'list' : typeof data}: see src/config/default.yaml`], file);
  }
  return {
    data: (data ?? {}) as Tree,
    where: (path) => `${file}${lineOf(doc, lc, path)}`,
    example: (path, v) => `write e.g. '${String(path[path.length - 1])}: ${v}' (the default), or remove the line`,
  };
}

/** ":LINE:COL" of a key (or of a list item) in the document, "" if not found. */
function lineOf(doc: Document, lc: LineCounter, path: Path): string {
  const parent = path.length > 1 ? doc.getIn(path.slice(0, -1), true) : doc.contents;
  const last = path[path.length - 1];
  let node: unknown;
  if (isMap(parent)) {
    const pair = parent.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === last);
    node = pair?.key ?? pair?.value;
  } else if (isSeq(parent) && typeof last === 'number') {
    node = parent.items[last];
  }
  const offset = (node as { range?: [number, number, number] } | undefined)?.range?.[0];
  if (offset === undefined) return '';
  const { line, col } = lc.linePos(offset);
  return `:${line}:${col}`;
}

function describeIssue(issue: z.core.$ZodIssue, merged: Tree, layers: Layer[]): string[] {
  const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => {
      const full = [...path, k];
      const known = knownKeys(path);
      const hint = suggest(k, path, known);
      return locate(full, layers, `unknown key '${dotted(full)}'`, hint);
    });
  }
  const value = getIn(merged, path);
  const key = dotted(path);
  const shown = SECRET_KEYS.has(key) ? '***' : show(value);
  let what: string;
  switch (issue.code) {
    case 'invalid_type':
      what = value === undefined ? `is missing` : `must be ${article(issue.expected)}, not ${shown}`;
      break;
    case 'too_small':
      what = `must be ${issue.origin === 'string' ? 'non-empty' : issue.origin === 'array' ? `a list of at least ${issue.minimum}` : `at least ${issue.minimum}`} (got ${shown})`;
      break;
    case 'too_big':
      what = `must be at most ${issue.maximum} (got ${shown})`;
      break;
    case 'invalid_value':
      what = `must be one of ${issue.values.map((v) => String(v)).join(', ')} (got ${shown})`;
      break;
    case 'invalid_union':
      what = `must be a duration like 30s, 5m, 1h, 500ms or a number of seconds (got ${shown})`;
      break;
    default:
      what = `must be ${issue.message} (got ${shown})`;
  }
  return [
    locate(path, layers, `${key} ${what}`, (l) => {
      const def = getIn(defaults(), path);
      if (def === undefined || def === '' || (Array.isArray(def) && !def.length)) return 'correct the value (see src/config/default.yaml)';
      return l.example(path, typeof def === 'string' ? def : JSON.stringify(def));
    }),
  ];
}

/** The message, prefixed with where the value came from (the highest layer that holds it). */
function locate(path: Path, layers: Layer[], message: string, fix: string | ((l: Layer) => string)): string {
  const layer = [...layers].reverse().find((l) => hasIn(l.data, path));
  const where = layer ? layer.where(path) : 'built-in default';
  return `${where}: ${message}: ${typeof fix === 'string' ? fix : layer ? fix(layer) : 'report this as a bug'}`;
}

function crossChecks(c: Config): [Path, string, string][] {
  const out: [Path, string, string][] = [];
  const r = c.redis;
  if (r.password && r.passwordFile) out.push([['redis', 'passwordFile'], 'redis.password and redis.passwordFile are both set', 'keep one of them (passwordFile keeps the secret out of this file)']);
  if (r.sentinels.length && r.url !== DEFAULT_REDIS_URL)
    out.push([
      ['redis', 'url'],
      `redis.url (${redactUrl(r.url)}) and redis.sentinels are both set: with Sentinel the sentinels name the primary`,
      'remove redis.url (or VIRT_COHORT_REDIS, --redis) and keep redis.sentinels and redis.primaryName; credentials go in redis.username / passwordFile, TLS in redis.tls; or remove redis.sentinels to use the one Redis of the URL',
    ]);
  if (r.cluster.length && r.url !== DEFAULT_REDIS_URL)
    out.push([
      ['redis', 'url'],
      `redis.url (${redactUrl(r.url)}) and redis.cluster are both set: with Redis Cluster its nodes are listed in redis.cluster`,
      'remove redis.url (or VIRT_COHORT_REDIS, --redis) and keep redis.cluster; credentials go in redis.username / passwordFile, TLS in redis.tls; or remove redis.cluster to use the one Redis of the URL',
    ]);
  if (r.cluster.length && r.sentinels.length)
    out.push([
      ['redis', 'cluster'],
      'redis.cluster and redis.sentinels are both set: a Redis Cluster fails over by itself, without sentinels',
      'keep redis.cluster for a Redis Cluster, or redis.sentinels for one primary with replicas watched by sentinels',
    ]);
  if (!r.sentinels.length && r.sentinelPasswordFile)
    out.push([['redis', 'sentinelPasswordFile'], 'redis.sentinelPasswordFile is set but there are no redis.sentinels', 'list the sentinels in redis.sentinels, or remove redis.sentinelPasswordFile']);
  if (r.tls && !r.sentinels.length && !r.cluster.length && !r.url.startsWith('rediss://'))
    out.push([
      ['redis', 'tls'],
      `redis.tls is set but redis.url is not rediss:// (${redactUrl(r.url)})`,
      'write the URL as rediss://HOST:PORT (or list redis.sentinels or redis.cluster), or remove redis.tls',
    ]);
  if (r.tls && Boolean(r.tls.cert) !== Boolean(r.tls.key))
    out.push([['redis', 'tls', r.tls.cert ? 'cert' : 'key'], 'redis.tls.cert and redis.tls.key go together', 'set both (a client certificate and its key), or neither']);
  const files: [Path, string | undefined][] = [
    [['redis', 'passwordFile'], r.passwordFile],
    [['redis', 'sentinelPasswordFile'], r.sentinelPasswordFile],
    [['redis', 'tls', 'ca'], r.tls?.ca],
    [['redis', 'tls', 'cert'], r.tls?.cert],
    [['redis', 'tls', 'key'], r.tls?.key],
    [['manager', 'environment'], c.manager.environment || undefined],
  ];
  for (const [path, f] of files) {
    if (!f) continue;
    let isFile: boolean | undefined;
    try {
      isFile = statSync(f).isFile();
    } catch (err) {
      // Not readable by whoever checks (a root-only secret) is not an error; missing is.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') continue;
    }
    if (!isFile) out.push([path, `${dotted(path)} names ${f}, which ${isFile === false ? 'is not a file' : 'does not exist'}`, 'create it, or correct the path']);
  }
  return out;
}

/** A URL with any password replaced by ***: safe to log and print. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^@/]*):[^@/]*@/, '//$1:***@');
  }
}

// ---- helpers ---------------------------------------------------------------

function knownKeys(path: Path): string[] {
  let shape: unknown = configSchema.shape;
  for (const p of path) {
    const s = (shape as Record<string, unknown> | undefined)?.[p as string] as { unwrap?: () => unknown; shape?: unknown } | undefined;
    if (!s) return [];
    const inner = (s.shape ? s : (s.unwrap?.() ?? s)) as { shape?: unknown };
    shape = inner.shape;
  }
  return Object.keys((shape as object | undefined) ?? {});
}

function suggest(key: string, path: Path, known: string[]): string {
  if (path.length === 0) {
    for (const s of SECTIONS) {
      if (knownKeys([s]).includes(key)) return `settings go in sections: move it under '${s}:' (indented)`;
    }
  }
  const close = known.map((k) => [k, distance(k.toLowerCase(), key.toLowerCase())] as const).sort((a, b) => a[1] - b[1])[0];
  if (close && close[1] <= Math.max(2, Math.floor(key.length / 3))) return `did you mean '${close[0]}'? (known here: ${known.join(', ')})`;
  return `remove it (known here: ${known.join(', ')})`;
}

/** The configuration with nothing set. */
export function defaults(): Config {
  return CONFIG_DEFAULTS;
}

const article = (t: string) => (t === 'array' ? 'a list' : t === 'object' ? 'a mapping (indented keys)' : /^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`);
const dotted = (p: Path) => p.map(String).join('.');

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'an empty value';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return JSON.stringify(v);
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length]!;
}

function getIn(t: unknown, path: Path): unknown {
  let cur = t;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[p];
  }
  return cur;
}

function hasIn(t: unknown, path: Path): boolean {
  let cur = t;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object' || !(p in (cur as object))) return false;
    cur = (cur as Record<string | number, unknown>)[p];
  }
  return true;
}

function setIn(t: Tree, path: string[], v: unknown): void {
  let cur = t;
  for (const p of path.slice(0, -1)) cur = (cur[p] ??= {}) as Tree;
  cur[path[path.length - 1]!] = v;
}

function merge(into: Tree, from: Tree): void {
  for (const [k, v] of Object.entries(from)) {
    const cur = into[k];
    if (isPlain(v) && isPlain(cur)) merge(cur, v);
    else if (isPlain(v)) {
      const copy: Tree = {};
      merge(copy, v);
      into[k] = copy;
    } else into[k] = v;
  }
}

const isPlain = (v: unknown): v is Tree => typeof v === 'object' && v !== null && !Array.isArray(v);
