/**
 * The few things the agent reads from a domain XML, with a tokenizer that
 * reads the text once, left to right (linear time whatever the input), and
 * never expands a DTD: a document with `<!DOCTYPE` or any other `<!…>`
 * declaration is refused (libvirt never writes one). Only the elements at
 * their place in libvirt's schema count: `/domain/devices/interface` is a NIC,
 * an `<interface>` anywhere else (inside `<metadata>`, say) is not.
 *
 * hooks/qemu carries a copy of `scanXml` (the hook runs from /etc/libvirt/hooks
 * with nothing but Node's standard library); test/hooks/hook.test.ts feeds both
 * the same documents.
 */

/** Larger domain XML is refused: libvirt's own are a few KiB, a few hundred KiB with huge metadata. */
export const MAX_DOMAIN_XML = 4 * 1024 * 1024;

export class DomainXmlError extends Error {
  override name = 'DomainXmlError';
}

export interface XmlVisitor {
  /** An element opens; `path` holds the names of its ancestors (root first), not its own. */
  open(name: string, attrs: Map<string, string>, path: readonly string[], at: number): void;
  /** It closes; `from` is where its content starts, `to` where its end tag starts (equal for `<x/>`). */
  close?(name: string, path: readonly string[], from: number, to: number): void;
}

const ENTITY: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** The five predefined entities and character references; nothing else (no DTD, no entity of its own). */
export function decodeText(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|lt|gt|amp|quot|apos);/g, (all, e: string) => {
    if (e[0] !== '#') return ENTITY[e]!;
    const code = e[1] === 'x' ? parseInt(e.slice(2), 16) : Number(e.slice(1));
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : all;
  });
}

const isSpace = (c: number) => c === 32 || c === 9 || c === 10 || c === 13;

/** Attributes of one start tag, scanned by hand (a regular expression over attribute text can backtrack). */
function attributes(tag: string, from: number, end: number): Map<string, string> {
  const out = new Map<string, string>();
  let k = from;
  for (;;) {
    while (k < end && isSpace(tag.charCodeAt(k))) k++;
    if (k >= end) return out;
    const start = k;
    while (k < end && !isSpace(tag.charCodeAt(k)) && tag[k] !== '=') k++;
    const name = tag.slice(start, k);
    while (k < end && isSpace(tag.charCodeAt(k))) k++;
    if (tag[k] !== '=') throw new DomainXmlError(`attribute '${name.slice(0, 40)}' has no value`);
    k++;
    while (k < end && isSpace(tag.charCodeAt(k))) k++;
    const q = tag[k];
    if (q !== '"' && q !== "'") throw new DomainXmlError(`attribute '${name.slice(0, 40)}' is not quoted`);
    const close = tag.indexOf(q, k + 1);
    if (close < 0 || close >= end) throw new DomainXmlError(`attribute '${name.slice(0, 40)}' is not closed`);
    out.set(name, decodeText(tag.slice(k + 1, close)));
    k = close + 1;
  }
}

/** Walks the elements of `xml` once. Throws DomainXmlError on a declaration, a cut-off document or mismatched tags. */
export function scanXml(xml: string, v: XmlVisitor): void {
  if (xml.length > MAX_DOMAIN_XML) throw new DomainXmlError(`${xml.length} characters, more than ${MAX_DOMAIN_XML}`);
  const path: string[] = [];
  const starts: number[] = [];
  const skip = (from: number, until: string) => {
    const at = xml.indexOf(until, from);
    if (at < 0) throw new DomainXmlError(`cut off: no '${until}'`);
    return at + until.length;
  };
  let i = 0;
  for (;;) {
    const lt = xml.indexOf('<', i);
    if (lt < 0) break;
    if (xml.startsWith('<!--', lt)) i = skip(lt + 4, '-->');
    else if (xml.startsWith('<![CDATA[', lt)) i = skip(lt + 9, ']]>');
    else if (xml.startsWith('<?', lt)) i = skip(lt + 2, '?>');
    else if (xml.startsWith('<!', lt)) throw new DomainXmlError('a DTD or declaration (<!…>): libvirt writes none, and none is read');
    else {
      let j = lt + 1;
      for (let q = 0; j < xml.length; j++) {
        // the '>' that ends the tag, outside quoted values
        const c = xml.charCodeAt(j);
        if (q) {
          if (c === q) q = 0;
        } else if (c === 34 || c === 39) q = c;
        else if (c === 62) break;
      }
      if (j >= xml.length) throw new DomainXmlError('cut off inside a tag');
      i = j + 1;
      if (xml[lt + 1] === '/') {
        const name = xml.slice(lt + 2, j).trim();
        if (path[path.length - 1] !== name) throw new DomainXmlError(`</${name.slice(0, 40)}> closes <${(path[path.length - 1] ?? '').slice(0, 40)}>`);
        path.pop();
        v.close?.(name, path, starts.pop()!, lt);
        continue;
      }
      const empty = xml[j - 1] === '/';
      const end = empty ? j - 1 : j;
      let e = lt + 1;
      while (e < end && !isSpace(xml.charCodeAt(e))) e++;
      const name = xml.slice(lt + 1, e);
      if (!name) throw new DomainXmlError(`an element without a name at ${lt}`);
      v.open(name, attributes(xml, e, end), path, lt);
      if (empty) v.close?.(name, path, i, i);
      else {
        path.push(name);
        starts.push(i);
      }
    }
  }
  if (path.length) throw new DomainXmlError(`cut off: <${path[path.length - 1]!.slice(0, 40)}> is not closed`);
}

export interface XmlInterface {
  mac: string;
  /** The host-side tap (vnetN); absent while the domain is not running. */
  tap?: string;
  /** Addresses written on the NIC (`<ip address=…/>`), if any. */
  addresses: string[];
}

export interface DomainXml {
  uuid?: string;
  interfaces: XmlInterface[];
  /** Attributes of virt-cohort's `<policy>` in `/domain/metadata` (namespace POLICY_NS), if any. */
  policy?: Map<string, string>;
  /**
   * The elements inside that `<policy>` (its rules: `<vc:apart group="db" scope="host"/>`,
   * `<vc:must site="a"/>`...), by local name, as written: src/placement/rules.ts checks them.
   */
  policyRules?: { element: string; attrs: Record<string, string> }[];
}

/** The XML namespace of virt-cohort's element in a domain's <metadata>. */
export const POLICY_NS = 'http://virt-cohort.org/xmlns/libvirt/1';

const MAC = /^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/;
const TAP = /^[^\s/'"]{1,15}$/; // a Linux interface name
const IP = /^[0-9a-fA-F.:]{2,45}$/;
const UUID = /^[0-9a-fA-F-]{36}$/;

const at = (path: readonly string[], ...want: string[]) => path.length === want.length && want.every((w, k) => path[k] === w);

/** uuid, NICs and policy of a domain XML. Throws DomainXmlError when it is not a well-formed document. */
export function readDomainXml(xml: string): DomainXml {
  const out: DomainXml = { interfaces: [] };
  let nic: { mac?: string; tap?: string; addresses: string[] } | undefined;
  let metaNs = new Map<string, string>();
  let policyTag: string | undefined;
  scanXml(xml, {
    open(name, attrs, path) {
      if (name === 'interface' && at(path, 'domain', 'devices')) nic = { addresses: [] };
      else if (nic && at(path, 'domain', 'devices', 'interface')) {
        const address = attrs.get('address') ?? '';
        const dev = attrs.get('dev') ?? '';
        if (name === 'mac' && MAC.test(address)) nic.mac = address.toLowerCase();
        else if (name === 'target' && TAP.test(dev)) nic.tap = dev;
        else if (name === 'ip' && IP.test(address)) nic.addresses.push(address);
      } else if (name === 'metadata' && at(path, 'domain')) metaNs = attrs;
      else if (at(path, 'domain', 'metadata')) {
        const colon = name.indexOf(':');
        const local = colon < 0 ? name : name.slice(colon + 1);
        const nsAttr = colon < 0 ? 'xmlns' : `xmlns:${name.slice(0, colon)}`;
        if (local === 'policy' && (attrs.get(nsAttr) ?? metaNs.get(nsAttr)) === POLICY_NS) {
          out.policy = attrs;
          policyTag = name;
          out.policyRules = [];
        }
      } else if (policyTag && path.length === 3 && at(path, 'domain', 'metadata', policyTag)) {
        const colon = name.indexOf(':');
        out.policyRules?.push({ element: colon < 0 ? name : name.slice(colon + 1), attrs: Object.fromEntries([...attrs].filter(([k]) => !k.startsWith('xmlns'))) });
      }
    },
    close(name, path, from, to) {
      if (name === policyTag && at(path, 'domain', 'metadata')) policyTag = undefined;
      if (name === 'interface' && nic && at(path, 'domain', 'devices')) {
        if (nic.mac) out.interfaces.push({ mac: nic.mac, ...(nic.tap ? { tap: nic.tap } : {}), addresses: nic.addresses });
        nic = undefined;
      } else if (name === 'uuid' && at(path, 'domain')) {
        const text = xml.slice(from, to).trim();
        if (UUID.test(text)) out.uuid = text;
      }
    },
  });
  return out;
}
