import { randomBytes } from 'node:crypto';

/** A per-run name: a letter and random base-36 characters, short enough for the lab's 6-character limit. */
export function uniqueName(first = 't', length = 6): string {
  const chars = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(length - 1);
  return first + Array.from(bytes, (b) => chars[b % chars.length]).join('');
}

/** Characters libvirt accepts in a domain name (it refuses only '/' and newline), in the shapes that once split pairs wrongly. */
export const ODD_NAMES = ['a>b', 'x:y', '{j}', 'with space', 'ünïcödé-名前', '%3E', '100%', '>', 'ether:0x0800', ':'];
