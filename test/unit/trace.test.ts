import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { environmentJson, parseEnvironment } from '../../src/placement/env.js';
import { readTrace } from '../../src/replay/read.js';
import { traceLines, writeTrace } from '../../src/replay/trace.js';
import { CORPUS } from '../helpers/corpus.js';
import { generate } from '../helpers/traces.js';

const small = () => generate({ ...CORPUS[1]!, periods: 40 }, 7);

async function inTemp<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'vc-trace-'));
  try {
    return await f(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const gz = (lines: string[]) => gzipSync(`${lines.join('\n')}\n`);

test('a trace written and read back is the same trace', async () => {
  const tr = small();
  await inTemp(async (dir) => {
    await writeTrace(join(dir, 't.gz'), tr);
    const back = await readTrace(join(dir, 't.gz'));
    assert.deepEqual(back, tr);
    assert.equal(back.periods.length, 40);
    assert.ok(back.periods[0]!.src.length > 0);
  });
});

test('an environment written as a file reads back the same', () => {
  const env = parseEnvironment(small().environments[0]!.file, 'generated');
  assert.deepEqual(parseEnvironment(environmentJson(env), 'again'), env);
});

test('a truncated trace is refused, with the line and period it stops at', async () => {
  const buf = gzipSync(`${[...traceLines(small())].join('\n')}\n`);
  await inTemp(async (dir) => {
    await writeFile(join(dir, 'cut.gz'), buf.subarray(0, Math.floor(buf.length * 0.6)));
    await assert.rejects(readTrace(join(dir, 'cut.gz')), /cut\.gz line \d+ \(after period 2026-11-02T00:\d\d:\d\dZ\): the file ends in the middle of its compressed data: it is truncated/);
    // Cut at a line boundary: the gzip is whole, the end record is missing.
    const lines = [...traceLines(small())];
    await writeFile(join(dir, 'short.gz'), gz(lines.slice(0, 40)));
    await assert.rejects(readTrace(join(dir, 'short.gz')), /short\.gz line 40 \(after period .*\): the trace stops without its end record: it is truncated/);
  });
});

test('a corrupt line, a trace from a newer format and a file that is no trace are each told apart', async () => {
  const lines = [...traceLines(small())];
  await inTemp(async (dir) => {
    const bad = [...lines];
    bad[35] = '{"t":"period","p":';
    await writeFile(join(dir, 'bad.gz'), gz(bad));
    await assert.rejects(readTrace(join(dir, 'bad.gz')), /bad\.gz line 36 \(after period .*\): not a JSON line .*record it again/);
    const badPair = [...lines];
    const at = badPair.findIndex((l) => l.startsWith('{"t":"period"'));
    badPair[at] = badPair[at]!.replace('"s":[', '"s":[99999,');
    await writeFile(join(dir, 'pair.gz'), gz(badPair));
    await assert.rejects(readTrace(join(dir, 'pair.gz')), /line \d+: period 2026-11-02T00:00:00Z: s, d, m and b must be lists of one length/);
    const newer = [...lines];
    newer[0] = newer[0]!.replace('"version":1', '"version":2');
    await writeFile(join(dir, 'newer.gz'), gz(newer));
    await assert.rejects(readTrace(join(dir, 'newer.gz')), /format version 2, newer than this virt-cohort reads \(up to 1\): replay it with a newer virt-cohort/);
    await writeFile(join(dir, 'plain.json'), lines.join('\n'));
    await assert.rejects(readTrace(join(dir, 'plain.json')), /plain\.json is not a virt-cohort trace \(not gzip'd/);
    await assert.rejects(readTrace(join(dir, 'none.gz')), /no such file; record one with virt-cohort record/);
  });
});

test('the generator repeats itself from its seed, and differs between seeds', () => {
  const a = gunzipSync(gzipSync([...traceLines(small())].join('\n'))).toString();
  assert.equal([...traceLines(small())].join('\n'), a);
  assert.notEqual([...traceLines(generate({ ...CORPUS[1]!, periods: 40 }, 8))].join('\n'), a);
});

test('a trace holds several environment versions, oldest first', async () => {
  const tr = small();
  tr.environments.push({ ...tr.environments[0]!, at: tr.environments[0]!.at + 600_000, source: 'later' });
  await inTemp(async (dir) => {
    await writeTrace(join(dir, 'v.gz'), tr);
    assert.deepEqual(
      (await readTrace(join(dir, 'v.gz'))).environments.map((e) => e.source),
      ['generated', 'later'],
    );
    const lines = gunzipSync(await readFile(join(dir, 'v.gz')))
      .toString()
      .split('\n');
    [lines[1], lines[2]] = [lines[2]!, lines[1]!];
    await writeFile(join(dir, 'w.gz'), gzipSync(lines.join('\n')));
    await assert.rejects(readTrace(join(dir, 'w.gz')), /line 3: environment versions must come oldest first/);
  });
});
