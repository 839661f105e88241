import { randomBytes } from 'node:crypto';
import { Hypervisor } from '@unraid/libvirt';
import { UserError } from '../util/errors.js';

/** A domain to define from its XML and start on one host. */
export interface DomainJob {
  /** The VM's name where it came from (a cluster file), for messages. */
  vm: string;
  host: string;
  /** The host's libvirt URI. */
  uri: string;
  xml: string;
}

/** Locally administered, random: libvirt would pick one too, but a template may need it (e.g. for a DHCP entry). */
export function randomMac(): string {
  return ['52', '54', '00', ...[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** A domain XML template with each {{key}} replaced; an unknown placeholder is refused, naming those there are. */
export function fillTemplate(template: string, values: Record<string, string | number>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (whole, key: string) => {
    if (!(key in values))
      throw new UserError(
        `the domain template has an unknown placeholder ${whole}: use ${Object.keys(values)
          .map((k) => `{{${k}}}`)
          .join(', ')}`,
      );
    return String(values[key]);
  });
}

/** Defines the domain on the libvirt at `uri` and starts it; its name as libvirt has it. */
export async function defineAndStart(uri: string, xml: string): Promise<string> {
  const hv = new Hypervisor({ uri });
  try {
    await hv.connectOpen();
    const dom = await hv.domainDefineXML(xml);
    await hv.domainCreate(dom);
    return await hv.domainGetName(dom);
  } finally {
    await hv.connectClose().catch(() => undefined);
  }
}

/**
 * Defines and starts each domain in order, and stops at the first that
 * fails, saying which were already started (exit 1: libvirt failed). Returns
 * the domains' names, in order.
 */
export async function defineAndStartAll(jobs: readonly DomainJob[]): Promise<string[]> {
  const done: string[] = [];
  for (const [i, j] of jobs.entries()) {
    try {
      done.push(await defineAndStart(j.uri, j.xml));
    } catch (err) {
      const before = i
        ? ` (already started: ${jobs
            .slice(0, i)
            .map((d) => `${d.vm} on ${d.host}`)
            .join(', ')})`
        : '';
      throw new UserError(`cannot define and start ${j.vm} on ${j.host} (${j.uri}): ${(err as Error).message}${before}`, 1);
    }
  }
  return done;
}
