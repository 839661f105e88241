import { UserError } from '../util/errors.js';

/**
 * Edits of an environment document (the file format of env.ts, as JSON): one value set by a dotted
 * path (`virt-cohort env set`), and what changed between two documents, leaf by leaf
 * (`env apply`, `env set`). Pure: the caller validates the result with parseEnvironment.
 *
 * A path follows the file: `sites.b.price.perVmHour`, `hosts.a1.availableUntil`,
 * `links.a-b.transferPricePerGB` (a link named by its two sites, either order), `endpoints.10.0.9.5`,
 * `cpuOvercommit`; `[N]` picks an entry of a list (`sites.b.price.schedule[0].perVmHour`).
 * `site.`, `host.`, `link.`, `endpoint.` are taken for the plural. A site or host name holding dots is
 * matched against the names the document has.
 */

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Doc = { [k: string]: Json };
type Step = string | number;

const ALIASES: Record<string, string> = { site: 'sites', host: 'hosts', link: 'links', endpoint: 'endpoints' };

/** A value as typed after `=`: JSON when it parses (0.02, "x", {...}, null), else the text itself (a date, a site name). */
export function parseValue(text: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch {
    return text;
  }
}

/** Splits `PATH=VALUE` (the first `=`). */
export function splitAssignment(expr: string): { path: string; value: Json } {
  const i = expr.indexOf('=');
  if (i <= 0) throw new UserError(`'${expr}' is not PATH=VALUE: write it as, e.g., sites.b.price.perVmHour=0.02`);
  return { path: expr.slice(0, i).trim(), value: parseValue(expr.slice(i + 1).trim()) };
}

const isObj = (v: unknown): v is Doc => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A link's name in paths: its two sites joined by '-', as written. */
const linkName = (l: Json): string | undefined => (isObj(l) && Array.isArray(l.sites) && l.sites.length === 2 ? `${String(l.sites[0])}-${String(l.sites[1])}` : undefined);

/** The steps of `path` through `doc`, and its canonical spelling. */
export function resolvePath(doc: Doc, path: string): { steps: Step[]; canonical: string; newLink?: [string, string] } {
  if (!path) throw new UserError('an empty path: name the value, e.g. sites.b.price.perVmHour');
  const head0 = /^[^.[]*/.exec(path)![0];
  const head = ALIASES[head0] ?? head0;
  const tail = path.slice(head0.length);
  const rest = tail.startsWith('.') ? tail.slice(1) : tail;
  const steps: Step[] = [head];
  let newLink: [string, string] | undefined;
  if (head === 'sites' || head === 'hosts' || head === 'endpoints' || head === 'links') {
    if (!rest) {
      if (head === 'endpoints') return { steps, canonical: head };
      throw new UserError(`${path}: name one of the ${head} (e.g. ${head}.NAME...), or replace them all with virt-cohort env apply`);
    }
    if (head === 'endpoints') return { steps: [head, rest], canonical: `${head}.${rest}` };
    if (head === 'links' && rest.startsWith('[')) return finish([head], head, rest, path);
    const coll = doc[head];
    const names: string[] = head === 'links' ? (Array.isArray(coll) ? coll.map(linkName).filter((n): n is string => !!n) : []) : isObj(coll) ? Object.keys(coll) : [];
    // The longest known name the rest starts with (names may hold dots); else its first segment.
    const known = names.filter((n) => rest === n || rest.startsWith(`${n}.`) || rest.startsWith(`${n}[`)).sort((a, b) => b.length - a.length)[0];
    let name = known;
    if (head === 'links' && !known) {
      // Either order of the two sites.
      const sites = Array.isArray(coll) ? coll : [];
      for (const [i, l] of sites.entries()) {
        if (!isObj(l) || !Array.isArray(l.sites) || l.sites.length !== 2) continue;
        const rev = `${String(l.sites[1])}-${String(l.sites[0])}`;
        if (rest === rev || rest.startsWith(`${rev}.`)) {
          return finish([head, i], `links.${linkName(l)}`, rest.slice(rev.length), path);
        }
      }
    }
    if (name === undefined) name = /^[^.[]+/.exec(rest)?.[0] ?? rest;
    const after = rest.slice(name.length);
    if (head === 'links') {
      const i = Array.isArray(coll) ? coll.findIndex((l) => linkName(l) === name) : -1;
      if (i < 0) {
        const m = /^(.+)-(.+)$/.exec(name);
        if (!m || after) throw new UserError(`${path}: no link ${name} in the environment (links: ${names.join(', ') || 'none'}); add one whole, e.g. links.a-b={"latencyMs":20,"bandwidthMbit":1000}`);
        newLink = [m[1]!, m[2]!];
        return { steps: [head, Array.isArray(coll) ? coll.length : 0], canonical: `links.${name}`, newLink };
      }
      return finish([head, i], `links.${name}`, after, path);
    }
    if (!names.includes(name) && after) {
      throw new UserError(
        `${path}: unknown ${head === 'sites' ? 'site' : 'host'} '${name}' (the environment has ${names.join(', ') || 'none'}); add it whole first, e.g. ${head}.${name}=${head === 'sites' ? '{}' : '{"site":"a"}'}`,
      );
    }
    return finish([head, name], `${head}.${name}`, after, path);
  }
  return finish([], '', path, path);
}

/** The remaining `.key` and `[N]` steps after `prefix`. */
function finish(prefix: Step[], canonical: string, rest: string, path: string): { steps: Step[]; canonical: string } {
  const steps = [...prefix];
  let c = canonical;
  const re = /\.?([^.[\]]+)|\[(\d+)\]/gy;
  let m: RegExpExecArray | null;
  let pos = 0;
  re.lastIndex = 0;
  while (pos < rest.length && (m = re.exec(rest))) {
    if (m[1] !== undefined) {
      steps.push(m[1]);
      c = c ? `${c}.${m[1]}` : m[1];
    } else {
      steps.push(Number(m[2]));
      c = `${c}[${m[2]}]`;
    }
    pos = re.lastIndex;
  }
  if (pos !== rest.length) throw new UserError(`${path}: cannot read the path from '${rest.slice(pos)}': use dots between keys and [N] for a list entry`);
  return { steps, canonical: c };
}

/** What `setPath` did: the new document, the path as the file spells it, the value before and after. */
export interface PathChange {
  doc: Doc;
  path: string;
  before: Json | undefined;
  after: Json | undefined;
}

/**
 * Sets one value of a document by its dotted path (a copy: `doc` is left as it is); null removes
 * the key (or the list entry). Objects on the way that do not exist yet are created, except the
 * site, host or link itself: those are added whole (`hosts.c1={"site":"a"}`).
 */
export function setPath(doc: object, path: string, value: Json): PathChange {
  const out = structuredClone(doc) as Doc;
  const r = resolvePath(out, path);
  if (r.newLink) {
    if (value === null) throw new UserError(`${path}: there is no such link to remove`);
    if (!isObj(value)) throw new UserError(`${path}: a new link is given whole, as an object, e.g. {"latencyMs":20,"bandwidthMbit":1000}`);
    const links = Array.isArray(out.links) ? out.links : (out.links = []);
    const link = { sites: r.newLink, ...value };
    links.push(link);
    return { doc: out, path: r.canonical, before: undefined, after: link };
  }
  let node: Json = out;
  for (let i = 0; i < r.steps.length - 1; i++) {
    const s = r.steps[i]!;
    const next = r.steps[i + 1]!;
    if (typeof s === 'number') {
      if (!Array.isArray(node) || s >= node.length) throw new UserError(`${path}: there is no entry [${s}] (the list has ${Array.isArray(node) ? node.length : 0})`);
      node = node[s]!;
      continue;
    }
    if (!isObj(node)) throw new UserError(`${path}: '${s}' is inside a value that is not an object`);
    if (node[s] === undefined || node[s] === null) {
      if (value === null) return { doc: out, path: r.canonical, before: undefined, after: undefined };
      node[s] = typeof next === 'number' ? [] : {};
    }
    node = node[s]!;
  }
  const last = r.steps.at(-1)!;
  let before: Json | undefined;
  if (typeof last === 'number') {
    if (!Array.isArray(node)) throw new UserError(`${path}: [${last}] is not in a list`);
    if (last > node.length || (value === null && last >= node.length)) throw new UserError(`${path}: there is no entry [${last}] (the list has ${node.length}); [${node.length}] adds one`);
    before = node[last];
    if (value === null) node.splice(last, 1);
    else node[last] = value;
  } else {
    if (!isObj(node)) throw new UserError(`${path}: '${last}' is inside a value that is not an object`);
    before = node[last];
    if (value === null) delete node[last];
    else node[last] = value;
  }
  return { doc: out, path: r.canonical, before, after: value === null ? undefined : value };
}

/** One leaf that differs: its path, and its value before and after (undefined: absent). */
export interface Change {
  path: string;
  before: Json | undefined;
  after: Json | undefined;
}

/** Every leaf of a document by path: objects by key, links by their sites, other lists by index; an empty object or list is a leaf. */
export function flatten(doc: Json, prefix = '', out = new Map<string, Json>()): Map<string, Json> {
  if (Array.isArray(doc)) {
    if (!doc.length) out.set(prefix, []);
    doc.forEach((v, i) => {
      const name = prefix === 'links' ? linkName(v) : undefined;
      if (name !== undefined && isObj(v)) {
        const { sites: _s, ...rest } = v;
        flatten(Object.keys(rest).length ? rest : {}, `links.${name}`, out);
      } else flatten(v, `${prefix}[${i}]`, out);
    });
  } else if (isObj(doc)) {
    const keys = Object.keys(doc);
    if (!keys.length && prefix) out.set(prefix, {});
    for (const k of keys) flatten(doc[k]!, prefix ? `${prefix}.${k}` : k, out);
  } else out.set(prefix, doc);
  return out;
}

/** What changed from `before` (undefined: nothing stored) to `after`, leaf by leaf, in the order of `after` then the removed. */
export function diffEnvironments(before: object | undefined, after: object): Change[] {
  const a = before === undefined ? new Map<string, Json>() : flatten(before as Json);
  const b = flatten(after as Json);
  const out: Change[] = [];
  const same = (x: Json | undefined, y: Json | undefined) => JSON.stringify(x) === JSON.stringify(y);
  for (const [k, v] of b) if (!same(a.get(k), v)) out.push({ path: k, before: a.get(k), after: v });
  for (const [k, v] of a) if (!b.has(k)) out.push({ path: k, before: v, after: undefined });
  return out;
}

/** One change for a person: `path: before -> after`. */
export function changeLine(c: Change): string {
  const show = (v: Json | undefined) => (v === undefined ? '(none)' : JSON.stringify(v));
  return `${c.path}: ${show(c.before)} -> ${show(c.after)}`;
}
