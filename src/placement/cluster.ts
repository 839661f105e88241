import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { UserError } from '../util/errors.js';
import type { ClusterSpec } from './initial.js';
import { peersFor } from './patterns.js';

/**
 * The cluster file of `virt-cohort place` (JSON; every key listed, anything else is refused):
 * {
 *   "vms": [ { "name": "web1", "memoryMiB": 512, "vcpus": 1 }, ... ],   required, at least one
 *   "pattern": "groups:2",          expected traffic: idle|pairs|ring|groups:K|all|peers:I,J (VM i = i-th listed); default: none
 *   "messagesPerSecond": 100,       assumed per peer for the pattern (default 100; for lab guests, what they send)
 *   "bytesPerMessage": 1000,        (default 1000; lab guests: the UDP payload, 32 to 1400)
 *   "template": "domain.xml"        libvirt domain XML, relative to the cluster file; {{name}}, {{memoryKiB}},
 * }                                 {{memoryMiB}}, {{vcpus}}, {{uuid}}, {{mac}} are replaced
 */
export interface ClusterFile {
  vms: { name: string; memoryMiB: number; vcpus: number }[];
  pattern: string | undefined;
  messagesPerSecond: number | undefined;
  bytesPerMessage: number | undefined;
  /** Absolute path. */
  template: string | undefined;
}

/** A VM of a cluster file, defined and started. */
export interface Applied {
  vm: string;
  host: string;
  domain: string;
  uuid?: string;
  mac?: string;
}

const above0 = (whole = false) => {
  const error = `must be a ${whole ? 'whole ' : ''}number above 0`;
  const n = z.number({ error }).positive({ error });
  return whole ? n.int({ error }) : n;
};

const vmSchema = z.strictObject(
  {
    name: z.string({ error: "must be a name of letters, digits, '.', '_' or '-'" }).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, { error: "must be a name of letters, digits, '.', '_' or '-'" }),
    memoryMiB: above0(),
    vcpus: above0(true),
  },
  { error: 'must be a JSON object' },
);

const clusterSchema = z.strictObject(
  {
    vms: z.array(vmSchema, { error: 'must be a non-empty list of { "name", "memoryMiB", "vcpus" }' }).min(1, { error: 'must be a non-empty list of { "name", "memoryMiB", "vcpus" }' }),
    pattern: z.string({ error: 'must be a string such as "groups:2"' }).optional(),
    messagesPerSecond: above0().optional(),
    bytesPerMessage: above0().optional(),
    template: z.string({ error: 'must be the path of a libvirt domain XML file' }).optional(),
  },
  { error: 'must be a JSON object' },
);

type Path = readonly PropertyKey[];

/** How a person finds the entry: `the top level`, `"pattern"`, `vms[2]`, `vms[2].name`. */
function entry(path: Path): string {
  if (!path.length) return 'the top level';
  const [top, ...rest] = path;
  return rest.reduce<string>((s, p) => (typeof p === 'number' ? `${s}[${p}]` : `${s}.${String(p)}`), rest.length ? String(top) : `"${String(top)}"`);
}

function valueAt(raw: unknown, path: Path): unknown {
  return path.reduce<unknown>((v, p) => (v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[p] : undefined), raw);
}

/** One line per problem: the file, the entry, what is wrong with it and what to write instead. */
function describe(issue: z.core.$ZodIssue, raw: unknown, where: string): string[] {
  if (issue.code === 'unrecognized_keys') {
    const allowed = Object.keys((issue.path.length ? vmSchema : clusterSchema).shape);
    return issue.keys.map((k) => `${where}: ${entry(issue.path)} has unknown key "${k}": remove it or use one of ${allowed.join(', ')}`);
  }
  const value = valueAt(raw, issue.path);
  const shown = JSON.stringify(value);
  const got = value === undefined ? ', got nothing: add it' : `, got ${shown.length > 60 ? `${shown.slice(0, 60)}...` : shown}`;
  return [`${where}: ${entry(issue.path)} ${issue.message}${got}`];
}

/** Reads and checks a cluster file; every problem it has is named with its file and entry. */
export function loadCluster(path: string): ClusterFile {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code) throw new UserError(`cannot read cluster file ${path}: ${e.message}`);
    throw new UserError(`cluster file ${path} is not valid JSON (${e.message.replace(/\s+/g, ' ')}): it is JSON, not YAML; see virt-cohort place --help`);
  }
  return parseCluster(raw, path);
}

/** `where`: the file the cluster came from (its template is relative to it). */
export function parseCluster(raw: unknown, where: string): ClusterFile {
  const parsed = clusterSchema.safeParse(raw);
  if (!parsed.success) {
    const seen = new Set<string>();
    const lines = parsed.error.issues.flatMap((i) => describe(i, raw, where)).filter((l) => !seen.has(l) && seen.add(l));
    throw new UserError(lines.join('\n'));
  }
  const c = parsed.data;
  const names = new Set<string>();
  c.vms.forEach((v, i) => {
    if (names.has(v.name)) throw new UserError(`${where}: vms[${i}]: VM ${v.name} is listed twice: give each VM a unique name`);
    names.add(v.name);
  });
  if (c.pattern !== undefined) for (let i = 1; i <= c.vms.length; i++) peersFor(c.pattern, i, c.vms.length); // its errors name the fix
  return {
    vms: c.vms,
    pattern: c.pattern,
    messagesPerSecond: c.messagesPerSecond,
    bytesPerMessage: c.bytesPerMessage,
    template: c.template === undefined ? undefined : resolve(dirname(where), c.template),
  };
}

/** The domain XML template a cluster file names (its `template`, resolved). */
export function readTemplate(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UserError(`cannot read the domain template ${path}: ${(err as Error).message}: fix "template" in the cluster file`);
  }
}

/** What the placement needs of a cluster file. */
export function clusterSpec(c: ClusterFile): ClusterSpec {
  return {
    vms: c.vms.map((v) => ({ name: v.name, memoryKiB: v.memoryMiB * 1024, vcpus: v.vcpus })),
    ...(c.pattern !== undefined && { pattern: c.pattern }),
    ...(c.messagesPerSecond !== undefined && { messagesPerSecond: c.messagesPerSecond }),
    ...(c.bytesPerMessage !== undefined && { bytesPerMessage: c.bytesPerMessage }),
  };
}
