import { splitPair } from './keys.js';

/** Messages and bytes of one pair member (raw or resolved). */
export type Counts = [messages: number, bytes: number];

/** A pair member named as people and the group finder want it. */
export interface ResolvedMember {
  src: string;
  dst: string;
  /** The source was an address of a known VM: the pair was measured at the receiving VM's tap. */
  received: boolean;
  /** Either side was an address of a known VM, now its name: the member no longer names the pair. */
  renamed: boolean;
}

/**
 * Names one pair member: a side that is an address of a known VM (vc:{vc}:addr)
 * becomes that VM. A member whose source is such an address was measured at
 * the receiving VM's tap: it duplicates the sender's own measurement when the
 * sender's host reported the same (resolved) pair in the same period, so the
 * query drops it then, and keeps it (under the VM's name) when the sender's
 * side is missing, e.g. its host runs no agent. Members that end up with the
 * same name are summed. Queries call this once per distinct dictionary id in
 * the span, not once per count.
 */
export function resolveMember(member: string, addr: Map<string, string>): ResolvedMember {
  const [s, d] = splitPair(member);
  const vs = addr.get(s);
  const vd = addr.get(d);
  return { src: vs ?? s, dst: vd ?? d, received: vs !== undefined, renamed: vs !== undefined || vd !== undefined };
}
