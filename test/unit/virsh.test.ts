import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkDomainName, DomainNameError, domainCommand, domainState, migrateArgs } from '../../src/libvirt/virsh.js';
import { succeeds } from '../../src/util/exec.js';

test('a domain named like an option stays a name: every positional comes after --', () => {
  const args = migrateArgs('--domain=victim', 'qemu+tls://b.hv.example/system', { migrateUri: 'tcp://10.0.1.2', autoConverge: true });
  assert.deepEqual(args, [
    'migrate',
    '--live',
    '--p2p',
    '--persistent',
    '--undefinesource',
    '--migrateuri',
    'tcp://10.0.1.2',
    '--auto-converge',
    '--',
    '--domain=victim',
    'qemu+tls://b.hv.example/system',
  ]);
  assert.deepEqual(domainCommand('domjobinfo', '--all', ['--completed']), ['domjobinfo', '--completed', '--', '--all']);
});

test('disks: shared storage libvirt cannot recognise migrates with --unsafe, local disks are copied', () => {
  const tail = ['--', 'vm', 'qemu+tls://b/system'];
  assert.deepEqual(migrateArgs('vm', 'qemu+tls://b/system', { unsafe: true }).slice(5), ['--unsafe', ...tail]);
  assert.deepEqual(migrateArgs('vm', 'qemu+tls://b/system', { copyStorage: true }).slice(5), ['--copy-storage-all', ...tail]);
  assert.deepEqual(migrateArgs('vm', 'qemu+tls://b/system').slice(5), tail);
});

test('names libvirt allows pass; names it cannot hold are refused with what to do', () => {
  for (const n of ['vm1', 'a>b', 'x:y', '{j}', 'with space', 'ünï', '-x', '--']) assert.equal(checkDomainName(n), n);
  for (const n of ['', 'a/b', 'a\nb', 'a\0b', 'x'.repeat(2000)]) {
    assert.throws(
      () => checkDomainName(n),
      (e: Error) => e instanceof DomainNameError && /virsh list --all/.test(e.message),
      JSON.stringify(n.slice(0, 10)),
    );
  }
});

// libvirt's built-in test driver (no daemon, no root): virsh itself must read `--domain=victim` as a name.
test('virsh reads a name after -- as a domain, not as an option', { skip: !(await succeeds('virsh', ['--version'])) && 'virsh is not installed' }, async () => {
  assert.equal(await domainState('test:///default', 'test'), 'running');
  await assert.rejects(domainState('test:///default', '--domain=test'), /failed to get domain '--domain=test'/);
});

test('manager.live false: the VM is paused for the whole copy (no --live), everything else alike', () => {
  const live = migrateArgs('vm', 'qemu+tls://b/system', { tls: true });
  const paused = migrateArgs('vm', 'qemu+tls://b/system', { tls: true, live: false });
  assert.equal(live[1], '--live');
  assert.ok(!paused.includes('--live'));
  assert.deepEqual(
    paused,
    live.filter((a) => a !== '--live'),
  );
});
