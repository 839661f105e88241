import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterSpec, parseCluster } from '../../src/placement/cluster.js';
import { UserError } from '../../src/util/errors.js';

const F = '/srv/clusters/web.json';
const vm = { name: 'web1', memoryMiB: 512, vcpus: 1 };

function refused(raw: unknown, ...res: RegExp[]): void {
  assert.throws(
    () => parseCluster(raw, F),
    (e: unknown) => {
      assert.ok(e instanceof UserError && e.exitCode === 2, String(e));
      for (const re of res) assert.match(e.message, re);
      return true;
    },
  );
}

test('a cluster file is read into the placement spec, its template relative to the file', () => {
  const c = parseCluster({ vms: [vm, { ...vm, name: 'web2', vcpus: 2 }], pattern: 'pairs', messagesPerSecond: 5, template: '../domain.xml' }, F);
  assert.equal(c.template, '/srv/domain.xml');
  assert.deepEqual(clusterSpec(c), {
    vms: [
      { name: 'web1', memoryKiB: 512 * 1024, vcpus: 1 },
      { name: 'web2', memoryKiB: 512 * 1024, vcpus: 2 },
    ],
    pattern: 'pairs',
    messagesPerSecond: 5,
  });
});

test('every problem names the file, the entry and what to write', () => {
  refused([vm], /^\/srv\/clusters\/web\.json: the top level must be a JSON object, got \[/);
  refused({ vms: [vm], sites: 3 }, /web\.json: the top level has unknown key "sites": remove it or use one of vms, pattern, messagesPerSecond, bytesPerMessage, template/);
  refused({ vms: [] }, /web\.json: "vms" must be a non-empty list of \{ "name", "memoryMiB", "vcpus" \}, got \[\]/);
  refused({}, /web\.json: "vms" must be a non-empty list .*got nothing: add it/);
  refused({ vms: [{ ...vm, disk: 3 }] }, /web\.json: vms\[0\] has unknown key "disk": remove it or use one of name, memoryMiB, vcpus/);
  refused({ vms: [{ ...vm, name: '-x' }] }, /vms\[0\]\.name must be a name of letters, digits, '\.', '_' or '-', got "-x"/);
  refused({ vms: [{ name: 'a', vcpus: 1 }] }, /vms\[0\]\.memoryMiB must be a number above 0, got nothing: add it/);
  refused({ vms: [{ ...vm, vcpus: 1.5 }] }, /vms\[0\]\.vcpus must be a whole number above 0, got 1\.5/);
  refused({ vms: [vm], bytesPerMessage: -1 }, /"bytesPerMessage" must be a number above 0, got -1/);
  refused({ vms: [vm], template: 3 }, /"template" must be the path of a libvirt domain XML file, got 3/);
  refused({ vms: [vm, vm] }, /web\.json: vms\[1\]: VM web1 is listed twice: give each VM a unique name/);
  refused({ vms: [vm], pattern: 'star' }, /unknown traffic pattern 'star'/);
  // All of a file's problems at once, one a line.
  refused({ vms: [{ ...vm, vcpus: 0 }], pattern: 2 }, /vms\[0\]\.vcpus must be .*\n.*"pattern" must be a string such as "groups:2", got 2/);
});
