import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkPeriodLength, msToNextBoundary, periodAt, periodLabel } from '../../src/util/period.js';

const at = (iso: string) => Date.parse(iso);

test('30 s periods start at hh:mm:00 and hh:mm:30, whatever the instant inside them', () => {
  assert.equal(periodLabel(periodAt(at('2026-11-24T21:14:00.000Z'), 30)), '2026-11-24T21:14:00Z');
  assert.equal(periodLabel(periodAt(at('2026-11-24T21:14:29.999Z'), 30)), '2026-11-24T21:14:00Z');
  assert.equal(periodLabel(periodAt(at('2026-11-24T21:14:30.000Z'), 30)), '2026-11-24T21:14:30Z');
  assert.equal(periodLabel(periodAt(at('2026-11-24T21:14:59.500Z'), 30)), '2026-11-24T21:14:30Z');
});

test('the wait to the next boundary', () => {
  assert.equal(msToNextBoundary(at('2026-11-24T21:14:29.250Z'), 30), 750);
  assert.equal(msToNextBoundary(at('2026-11-24T21:14:30.000Z'), 30), 30_000);
  assert.equal(msToNextBoundary(at('2026-11-24T21:14:05.000Z'), 10), 5000);
});

test('period lengths must divide an hour so that every host agrees on the boundaries', () => {
  for (const ok of [1, 10, 15, 30, 60, 300, 3600]) assert.equal(checkPeriodLength(ok), ok);
  for (const bad of [0, -30, 7, 31.5, 1000, 7200]) assert.throws(() => checkPeriodLength(bad), /divides an hour/);
});
