// Benches write their tables into docs/measurements.md, so that the numbers
// there are the ones a bench printed, never typed by hand. A bench run with
// --write-docs replaces the text between `<!-- bench:NAME -->` and
// `<!-- /bench:NAME -->` with what it printed; everything outside the markers
// is left as it is. The markers must already be there (once each): this
// creates no file and no block, so a typo in a name fails loudly.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from '../../src/paths.js';

/** The document the benches write into. */
export const MEASUREMENTS = join(packageRoot, 'docs', 'measurements.md');
/** The README, for the short summaries some benches keep there. */
export const README = join(packageRoot, 'README.md');

export const WRITE_DOCS = '--write-docs';

const NAME = /^[a-z0-9][a-z0-9-]*$/;

export const openMarker = (name: string) => `<!-- bench:${name} -->`;
export const closeMarker = (name: string) => `<!-- /bench:${name} -->`;

/** The bench's arguments without `--write-docs`, and whether it was given. */
export function benchArgs(argv: readonly string[] = process.argv.slice(2)): { writeDocs: boolean; args: string[] } {
  return { writeDocs: argv.includes(WRITE_DOCS), args: argv.filter((a) => a !== WRITE_DOCS) };
}

function only(text: string, marker: string, where: string): number {
  const at = text.indexOf(marker);
  if (at < 0) throw new Error(`${where} has no ${marker}: add the marker pair around the block the bench owns`);
  if (text.indexOf(marker, at + marker.length) >= 0) throw new Error(`${where} has ${marker} more than once: keep one`);
  return at;
}

/**
 * `text` with the block NAME's content replaced by `content` (trimmed, one
 * line break after the opening marker and before the closing one). Pure.
 */
export function replaceBlock(text: string, name: string, content: string, where = 'the document'): string {
  if (!NAME.test(name)) throw new Error(`bad block name '${name}': lower-case letters, digits and '-'`);
  const open = openMarker(name);
  const close = closeMarker(name);
  const start = only(text, open, where) + open.length;
  const end = only(text, close, where);
  if (end < start) throw new Error(`${where}: ${close} comes before ${open}`);
  const body = content.replace(/^\s*\n/, '').trimEnd();
  return `${text.slice(0, start)}\n${body ? `${body}\n` : ''}${text.slice(end)}`;
}

/** Replaces block NAME in `file` (docs/measurements.md by default); the file must exist and hold the markers. */
export async function writeBlock(name: string, content: string, file = MEASUREMENTS): Promise<void> {
  const text = await readFile(file, 'utf8');
  const next = replaceBlock(text, name, content, file);
  if (next !== text) await writeFile(file, next);
}

/** For a bench: writes the block when the run asked for it (`--write-docs`), and says so on stderr. */
export async function maybeWriteBlock(writeDocs: boolean, name: string, content: string, file = MEASUREMENTS): Promise<void> {
  if (!writeDocs) return;
  await writeBlock(name, content, file);
  process.stderr.write(`wrote block '${name}' of ${file}\n`);
}
