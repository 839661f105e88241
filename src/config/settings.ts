import type { z } from 'zod';
import { CONFIG_DEFAULTS, configSchema, type SettingDoc } from './schema.js';

/**
 * The schema read back as data: every key with its path, kind, default and
 * documentation, for the flags, the environment variables and the generated
 * files. Nothing here is written by hand.
 */

export type SettingKind = 'int' | 'number' | 'bool' | 'list' | 'string' | 'enum' | 'duration';

export interface Setting extends SettingDoc {
  /** Dotted: agent.periodSeconds, redis.tls.ca. */
  path: string;
  /** Last part of the path, as written in the file. */
  key: string;
  kind: SettingKind;
  /** An enum's values. */
  values?: readonly string[];
  /** The built-in default; undefined: none (the key is optional). */
  default: unknown;
  /** Placeholder of the flag's value. */
  arg: string;
}

/** A mapping of keys: the whole file, a section, or a sub-mapping (redis.tls). */
export interface SettingGroup {
  path: string;
  key: string;
  description: string;
  /** The mapping may be left out altogether (redis.tls). */
  optional: boolean;
  entries: (Setting | SettingGroup)[];
}

type Def = { type: string; innerType?: Schema; shape?: Record<string, Schema>; entries?: Record<string, string> };
type Schema = z.ZodType & { def: Def; isInt?: boolean };

export const isGroup = (e: Setting | SettingGroup): e is SettingGroup => 'entries' in e;

function unwrap(s: Schema): { inner: Schema; optional: boolean } {
  let inner = s;
  let optional = false;
  while (inner.def.type === 'default' || inner.def.type === 'optional') {
    if (inner.def.type === 'optional') optional = true;
    inner = inner.def.innerType!;
  }
  return { inner, optional };
}

function kindOf(inner: Schema): SettingKind {
  switch (inner.def.type) {
    case 'number':
      return inner.isInt ? 'int' : 'number';
    case 'boolean':
      return 'bool';
    case 'array':
      return 'list';
    case 'enum':
      return 'enum';
    // The one union of the schema: a number of seconds or a duration string.
    case 'union':
      return 'duration';
    default:
      return 'string';
  }
}

function getIn(v: unknown, path: string[]): unknown {
  return path.reduce<unknown>((cur, p) => (cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[p] : undefined), v);
}

function walk(schema: Schema, path: string[]): Setting | SettingGroup {
  const doc = (schema.meta() ?? {}) as Partial<SettingDoc>;
  const { inner, optional } = unwrap(schema);
  const key = path[path.length - 1] ?? '';
  const dotted = path.join('.');
  if (inner.def.type === 'object') {
    const entries = Object.entries(inner.def.shape!).map(([k, s]) => walk(s, [...path, k]));
    return { path: dotted, key, description: doc.description ?? '', optional, entries };
  }
  const kind = kindOf(inner);
  const values = kind === 'enum' ? Object.values(inner.def.entries!) : undefined;
  // A key without a description still works; test/unit/settings.test.ts refuses it.
  return {
    description: '',
    ...doc,
    path: dotted,
    key,
    kind,
    ...(values ? { values } : {}),
    default: getIn(CONFIG_DEFAULTS, path),
    arg: doc.arg ?? (kind === 'bool' ? '' : 'value'),
  };
}

/** The whole file as a tree: sections, their keys and sub-mappings, in the schema's order. */
export const SETTINGS_TREE = walk(configSchema as unknown as Schema, []) as SettingGroup;

function leaves(g: SettingGroup): Setting[] {
  return g.entries.flatMap((e) => (isGroup(e) ? leaves(e) : [e]));
}

/** Every key, in the schema's order. */
export const SETTINGS: readonly Setting[] = leaves(SETTINGS_TREE);

const byPath = new Map(SETTINGS.map((s) => [s.path, s]));

export function setting(path: string): Setting {
  const s = byPath.get(path);
  if (!s) throw new Error(`no setting ${path} in src/config/schema.ts`);
  return s;
}

/** Keys holding secrets: shown as *** by `config check` and never logged. */
export const SECRET_KEYS: ReadonlySet<string> = new Set(SETTINGS.filter((s) => s.secret).map((s) => s.path));

/** How a default reads in help and in the reference. */
export function shownDefault(s: Setting): string {
  if (s.defaultText) return s.defaultText;
  const d = s.default;
  if (d === undefined || d === '' || (typeof d === 'object' && d !== null && !Object.keys(d).length)) return 'none';
  return Array.isArray(d) ? d.join(',') : String(d);
}

/** The description's first sentence ("e.g." does not end one). */
export function summary(s: { description: string }): string {
  return s.description.split(/(?<!\be\.g|\bi\.e)\.(?:\s|$)/)[0]!;
}
