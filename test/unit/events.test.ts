import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventJudge, hookEntry, type HookEntry } from '../../src/manager/events.js';

let n = 0;
const ev = (host: string, domain: string, operation: string, at: number, source = 'hook'): HookEntry => ({ id: `${at}-${n++}`, host, domain, operation, sub: 'begin', at, source });

test('a VM started is to be placed; one arriving by migration is an arrival; each start is acted on once', () => {
  const j = new EventJudge();
  // libvirt's hooks on a migration's destination: migrate, prepare, start, started.
  assert.deepEqual(j.judge(ev('a1', 'vm1', 'migrate', 1000)), { kind: 'none', why: 'migrate needs no reaction' });
  j.judge(ev('a1', 'vm1', 'prepare', 1100));
  assert.deepEqual(j.judge(ev('a1', 'vm1', 'started', 1300)), { kind: 'arrived', vm: 'vm1', host: 'a1', at: 1300 });
  // On a plain start: prepare, start, started: no migrate.
  j.judge(ev('b1', 'vm5', 'prepare', 1500));
  j.judge(ev('b1', 'vm5', 'start', 1510));
  assert.equal(j.judge(ev('b1', 'vm5', 'started', 1600)).kind, 'place');
  assert.deepEqual(j.judge(ev('b1', 'vm2', 'started', 2000)), { kind: 'place', vm: 'vm2', host: 'b1', at: 2000 });
  assert.deepEqual(j.judge(ev('b1', 'vm2', 'started', 2000)), { kind: 'none', why: 'a duplicate of an event already handled' });
  assert.deepEqual(j.judge(ev('b1', 'vm2', 'started', 2500)), { kind: 'none', why: 'this start was handled already' }, 'the same start told twice (another id, another time)');
  assert.equal(j.judge(ev('b1', 'vm2', 'started', 2000 + 60_000)).kind, 'place', 'started again a minute later: a new start');
  // Out of order across hosts: the source's release after the destination's start changes nothing.
  assert.equal(j.judge(ev('b1', 'vm1', 'release', 1200)).kind, 'none');
  assert.equal(j.judge(ev('a1', 'vm3', 'gone', 5000, 'reconcile')).kind, 'none');
  // A migrate long before does not make a start an arrival.
  j.judge(ev('c1', 'vm4', 'migrate', 0));
  assert.equal(j.judge(ev('c1', 'vm4', 'started', 400_000)).kind, 'place');
});

test('stream entries: the fields the agent writes, and malformed ones refused', () => {
  assert.deepEqual(hookEntry('a1', '1-0', ['host', 'a1', 'source', 'hook', 'domain', 'vm1', 'operation', 'started', 'sub', 'begin', 'extra', '-', 'at', '1700000000000']), {
    id: '1-0',
    host: 'a1',
    domain: 'vm1',
    operation: 'started',
    sub: 'begin',
    at: 1700000000000,
    source: 'hook',
  });
  assert.equal(hookEntry('a1', '1-1', ['domain', 'vm1', 'operation', 'started']), undefined, 'no time');
  assert.equal(hookEntry('a1', '1-2', ['operation', 'started', 'at', '5']), undefined, 'no domain');
});
