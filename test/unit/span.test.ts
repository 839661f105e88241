import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveMember } from '../../src/collector/resolve.js';
import { parseDuration, spanPeriods, spanStarts } from '../../src/collector/span.js';
import { UserError } from '../../src/util/errors.js';

test('durations as people type them; a bare number is seconds', () => {
  const cases: [string, number][] = [
    ['500ms', 500],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['1.5', 1500],
    [' 2 m ', 120_000],
  ];
  for (const [text, ms] of cases) assert.equal(parseDuration(text, '--since'), ms, text);
  for (const bad of ['', 'abc', '5 minutes', '-1s', '1e3']) {
    assert.throws(
      () => parseDuration(bad, '--since'),
      (e) => e instanceof UserError && /--since '.*' is not a duration: write e\.g\. 30s/.test(e.message),
      bad,
    );
  }
});

test('a span is whole periods, or a duration rounded up to cover it', () => {
  assert.equal(spanPeriods(10, 30), 10);
  assert.equal(spanPeriods(' 10 ', 30), 10);
  assert.equal(spanPeriods('5m', 30), 10);
  assert.equal(spanPeriods('31s', 30), 2);
  assert.equal(spanPeriods('1ms', 30), 1);
  assert.throws(() => spanPeriods('', 30), /the span is empty/);
  assert.throws(() => spanPeriods('-3', 30), /at least one period/);
  assert.throws(() => spanPeriods('-5m', 30), /is negative/);
  assert.throws(() => spanPeriods(0, 30), /at least one period/);
  assert.throws(() => spanPeriods(1.5, 30), /at least one period/);
  assert.throws(() => spanPeriods('0s', 30), /at least one period/);
});

test('the span ends with the newest period that has ended', () => {
  // 3645 s: period 3630 is running, 3600 is the newest ended.
  assert.deepEqual(spanStarts(3, 30, 3_645_000), [3540, 3570, 3600]);
  assert.deepEqual(spanStarts(1, 30, 3_630_000), [3600], 'at a boundary the period that just began has not ended');
  assert.deepEqual(spanStarts(2, 10, 3_659_999), [3630, 3640]);
});

test('pair members are named by VM where an address is a known VM; a known source means measured at the receiver', () => {
  const addr = new Map([
    ['10.0.0.1', 'a'],
    ['10.0.0.2', 'b'],
  ]);
  assert.deepEqual(resolveMember('10.0.0.1>10.0.0.2', addr), { src: 'a', dst: 'b', received: true, renamed: true });
  assert.deepEqual(resolveMember('a>10.0.0.2', addr), { src: 'a', dst: 'b', received: false, renamed: true });
  assert.deepEqual(resolveMember('a>192.0.2.7', addr), { src: 'a', dst: '192.0.2.7', received: false, renamed: false });
  assert.deepEqual(resolveMember('192.0.2.7>a', addr), { src: '192.0.2.7', dst: 'a', received: false, renamed: false });
  assert.deepEqual(resolveMember('b>ether:0x0806', addr), { src: 'b', dst: 'ether:0x0806', received: false, renamed: false });
});
