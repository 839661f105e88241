import { pairMember, splitPair } from './keys.js';

/** Messages and bytes of one pair member (raw or resolved). */
export type Counts = [messages: number, bytes: number];

/** Adds a ZRANGE ... WITHSCORES reply into `into`, at index `at` of each pair's counts (0: messages, 1: bytes). */
export function addScores(into: Map<string, Counts>, reply: string[], at: 0 | 1): void {
  for (let i = 0; i < reply.length; i += 2) {
    const m = reply[i]!;
    let c = into.get(m);
    if (!c) into.set(m, (c = [0, 0]));
    c[at] += Number(reply[i + 1]);
  }
}

/**
 * Names the pairs of one period as people and the group finder want them: a
 * side that is an address of a known VM (vc:addr) becomes that VM. A member
 * whose source is such an address was measured at the receiving VM's tap: it
 * duplicates the sender's own measurement when the sender's host reported the
 * same pair this period, so it is dropped then, and kept (under the VM's name)
 * when the sender's side is missing, e.g. its host runs no agent. Members that
 * end up with the same name are summed.
 */
export function resolvePeriod(raw: Map<string, Counts>, addr: Map<string, string>): Map<string, Counts> {
  const sent = new Map<string, Counts>();
  const received = new Map<string, Counts>();
  for (const [member, [m, b]] of raw) {
    const [s, d] = splitPair(member);
    const vs = addr.get(s);
    const key = pairMember(vs ?? s, addr.get(d) ?? d);
    const into = vs === undefined ? sent : received;
    const c = into.get(key);
    if (c) { c[0] += m; c[1] += b; } else into.set(key, [m, b]);
  }
  for (const [key, c] of received) if (!sent.has(key)) sent.set(key, c);
  return sent;
}
