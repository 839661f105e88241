import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchArgs, MEASUREMENTS, replaceBlock, writeBlock } from '../bench/doc.js';

const doc = [
  '# Measurements',
  '',
  'Prose before, kept.',
  '<!-- bench:lab -->',
  '| old | table |',
  '|---|---|',
  '| 1 | 2 |',
  '<!-- /bench:lab -->',
  'Prose between, kept.',
  '<!-- bench:placement-speed -->',
  '<!-- /bench:placement-speed -->',
  'The end.',
  '',
].join('\n');

test('a block is replaced between its markers, and nothing else changes', () => {
  const out = replaceBlock(doc, 'lab', '| new | table |\n|---|---|\n| 3 | 4 |');
  assert.equal(out, doc.replace('| old | table |\n|---|---|\n| 1 | 2 |', '| new | table |\n|---|---|\n| 3 | 4 |'));
  // The other block and the prose are byte for byte the same.
  assert.ok(out.startsWith('# Measurements\n\nProse before, kept.\n<!-- bench:lab -->\n| new'));
  assert.ok(out.endsWith('Prose between, kept.\n<!-- bench:placement-speed -->\n<!-- /bench:placement-speed -->\nThe end.\n'));
});

test('an empty block is filled, and leading blank lines and trailing space of the content are dropped', () => {
  const out = replaceBlock(doc, 'placement-speed', '\n\n| a |\n|---|\n\n\n');
  assert.ok(out.includes('<!-- bench:placement-speed -->\n| a |\n|---|\n<!-- /bench:placement-speed -->'));
  assert.equal(replaceBlock(out, 'placement-speed', ''), doc);
});

test('replacing twice with the same content is the same as once; content with $ signs is taken literally', () => {
  const once = replaceBlock(doc, 'lab', '| $& | $1 | $$ |');
  assert.equal(replaceBlock(once, 'lab', '| $& | $1 | $$ |'), once);
  assert.ok(once.includes('\n| $& | $1 | $$ |\n'));
});

test('a missing, repeated or misplaced marker and a bad name are refused with what to do', () => {
  assert.throws(() => replaceBlock(doc, 'sensor', 'x', 'm.md'), /m\.md has no <!-- bench:sensor -->: add the marker pair/);
  assert.throws(() => replaceBlock(doc.replace('<!-- /bench:lab -->', ''), 'lab', 'x'), /no <!-- \/bench:lab -->/);
  assert.throws(() => replaceBlock(`${doc}<!-- bench:lab -->\n`, 'lab', 'x'), /more than once/);
  const swapped = '<!-- /bench:lab -->\nx\n<!-- bench:lab -->\n';
  assert.throws(() => replaceBlock(swapped, 'lab', 'y'), /comes before/);
  assert.throws(() => replaceBlock(doc, 'Lab Table', 'x'), /bad block name/);
  assert.throws(() => replaceBlock(doc, '', 'x'), /bad block name/);
});

test('writeBlock rewrites only the file it is given, and creates nothing', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vc-benchdoc-'));
  try {
    const file = join(dir, 'measurements.md');
    await writeFile(file, doc);
    await writeBlock('lab', '| w |\n|---|', file);
    assert.equal(await readFile(file, 'utf8'), replaceBlock(doc, 'lab', '| w |\n|---|'));
    await assert.rejects(writeBlock('nope', 'x', file), /has no <!-- bench:nope -->/);
    assert.equal(await readFile(file, 'utf8'), replaceBlock(doc, 'lab', '| w |\n|---|'));
    await assert.rejects(writeBlock('lab', 'x', join(dir, 'absent.md')), /ENOENT/);
    assert.deepEqual(await readdir(dir), ['measurements.md']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('--write-docs is taken out of the bench arguments, wherever it is', () => {
  assert.deepEqual(benchArgs(['3', '1000']), { writeDocs: false, args: ['3', '1000'] });
  assert.deepEqual(benchArgs(['--write-docs', '3', '1000']), { writeDocs: true, args: ['3', '1000'] });
  assert.deepEqual(benchArgs(['3', '--write-docs']), { writeDocs: true, args: ['3'] });
});

test("the checkout's docs/measurements.md holds each bench block exactly once", async () => {
  if (!existsSync(MEASUREMENTS)) return; // an installed package ships no docs
  const text = await readFile(MEASUREMENTS, 'utf8');
  for (const name of ['lab', 'sensor', 'collector', 'agent', 'placement-quality', 'placement-speed']) {
    assert.equal(replaceBlock(text, name, 'probe').includes('probe'), true, name);
  }
});
