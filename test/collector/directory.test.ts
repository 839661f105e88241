import { test } from 'node:test';
import assert from 'node:assert/strict';
import { K } from '../../src/collector/keys.js';
import { AddressBook } from '../../src/agent/addresses.js';
import { HostDirectory } from '../../src/agent/directory.js';
import { Registry, type VmRecord } from '../../src/collector/registry.js';
import { Store } from '../../src/collector/store.js';
import type { DomainSnapshot } from '../../src/libvirt/client.js';
import { fileRedis, hostRecord, report } from './fixtures.js';

const r = fileRedis();
let registry: Registry;

const vm = (host: string, state: VmRecord['state'], addresses: string[] = []): VmRecord => ({ uuid: 'u-1', host, site: 's', state, mac: '52:54:00:00:00:01', addresses, memoryKiB: 65536, vcpus: 1 });
const web = async () => (await registry.vms()).find((v) => v.name === 'web')!;

test('a VM record: since moves only when its host or state changes; its addresses point at it', async () => {
  registry = new Registry(r.redis);
  await registry.putVm('web', vm('h1', 'running', ['10.0.0.1', 'fd00::1']), 1000);
  await registry.putVm('web', vm('h1', 'running', ['10.0.0.1', 'fd00::1']), 2000);
  assert.equal((await web()).since, 1000, 'the same host and state: since stays');
  assert.deepEqual(
    await registry.addresses(),
    new Map([
      ['10.0.0.1', 'web'],
      ['fd00::1', 'web'],
    ]),
  );
  await registry.putVm('web', { ...vm('h2', 'arriving'), pinned: true }, 3000);
  const rec = await web();
  assert.deepEqual(
    { host: rec.host, state: rec.state, since: rec.since, pinned: rec.pinned, optOut: rec.optOut, addresses: rec.addresses },
    { host: 'h2', state: 'arriving', since: 3000, pinned: true, optOut: false, addresses: [] },
  );
  await registry.putVm('web', vm('h2', 'running'), 4000);
  assert.equal((await web()).since, 4000);
});

test('a VM is marked gone only by the host the directory places it on; its addresses only where they still point at it', async () => {
  assert.equal(await registry.vmGone('web', 'h1', 5000), false, 'h1 is its old host: the VM moved to h2');
  assert.equal((await web()).state, 'running');
  assert.equal(await registry.vmGone('web', 'h2', 6000), true);
  assert.deepEqual([(await web()).state, (await web()).since], ['stopped', 6000]);
  await r.redis.hset(K.addr, 'fd00::1', 'db'); // taken over by another VM since
  await registry.dropAddresses('web', ['10.0.0.1', 'fd00::1']);
  assert.deepEqual(await registry.addresses(), new Map([['fd00::1', 'db']]));
});

test('a command that fails inside a transaction fails the call (registration, a report)', async () => {
  const store = new Store(r.redis);
  await r.redis.set(K.settings, 'not a hash');
  await assert.rejects(registry.registerHost('h1', hostRecord()), /WRONGTYPE/);
  await r.redis.del(K.settings);
  await registry.registerHost('h1', hostRecord());
  await r.redis.set(K.hostMsgs(1_800_000_060, 'h1'), 'not a zset');
  await assert.rejects(store.apply(report('h1', 1_800_000_060, [['a>b', 1, 1]])), /WRONGTYPE/, "the script's error, not a reply");
});

/**
 * One host's agent as far as the directory goes, in the order Agent.reconcile
 * runs: libvirt's addresses into its AddressBook, the VMs that left forgotten,
 * then its HostDirectory publishes. `arp` is what a VM announced in a closed period.
 */
class HostAgent {
  readonly book = new AddressBook();
  readonly directory: HostDirectory;
  private running: string[] = [];

  constructor(host: string) {
    this.directory = new HostDirectory(registry, this.book, host, 's');
  }

  arp(vm: string, ...addrs: string[]): void {
    this.book.observe(new Map([[vm, new Set(addrs)]]), new Map());
  }

  /** `domains`: what libvirt lists now, each with the addresses libvirt knows for it. Returns the VMs marked gone. */
  reconcile(domains: [DomainSnapshot, string[]][]): Promise<string[]> {
    for (const [d, addrs] of domains) this.book.trust(d.name, addrs);
    const names = domains.map(([d]) => d.name);
    const gone = this.running.filter((n) => !names.includes(n));
    this.running = names;
    this.directory.keepOnly(new Set(names));
    return this.directory.publish(
      domains.map(([d]) => d),
      gone,
    );
  }
}

const domain = (name: string, state: DomainSnapshot['state']): DomainSnapshot => ({
  name,
  uuid: `uuid-${name}`,
  state,
  memoryKiB: 65536,
  vcpus: 1,
  interfaces: [{ mac: '52:54:00:00:01:01', tap: 'vnet0', addresses: [] }],
  pinned: false,
  optOut: false,
});

/** What `stats --vms` shows of `name` (it prints Registry.vms()), and who vc:{vc}:addr says holds each of `addrs`. */
async function view(name: string, addrs: string[]): Promise<{ host: string; state: string; addresses: string[]; addr: (string | null)[] }> {
  const v = (await registry.vms()).find((x) => x.name === name)!;
  return { host: v.host, state: v.state, addresses: v.addresses, addr: await r.redis.hmget(K.addr, ...addrs) };
}

for (const order of ['destination first', 'source first'] as const) {
  test(`a VM migrated by hand keeps its addresses in the directory throughout (${order})`, async () => {
    registry = new Registry(r.redis);
    const vm = `mig-${order.split(' ')[0]}`;
    const [v4, v6] = order === 'destination first' ? ['10.1.0.1', 'fd01::1'] : ['10.2.0.1', 'fd02::1'];
    const h1 = new HostAgent('h1');
    const h2 = new HostAgent('h2');
    // On h1 the VM announced v4 in its ARP; h1's libvirt knows v6 (a lease of h1's network), h2's libvirt knows none.
    h1.arp(vm, v4);
    await h1.reconcile([[domain(vm, 'running'), [v6]]]);
    const before = { host: 'h1', state: 'running', addresses: [v4, v6], addr: [vm, vm] };
    assert.deepEqual(await view(vm, [v4, v6]), before);

    // virsh migrate: paused on h2 while it still runs on h1; the directory stays on h1.
    await h2.reconcile([[domain(vm, 'paused'), []]]);
    assert.deepEqual(await view(vm, [v4, v6]), before);

    const moved = { host: 'h2', state: 'running', addresses: [v4, v6], addr: [vm, vm] };
    if (order === 'destination first') {
      assert.deepEqual(await h2.reconcile([[domain(vm, 'running'), []]]), []);
      assert.deepEqual(await view(vm, [v4, v6]), moved, "h2 publishes the VM with the addresses of h1's entry");
      assert.deepEqual(await h1.reconcile([]), [], "h1's gone comes too late: the VM is h2's now");
      assert.deepEqual(await view(vm, [v4, v6]), moved, 'h1 leaving takes nothing from it');
    } else {
      assert.deepEqual(await h1.reconcile([]), [vm]);
      assert.deepEqual(await view(vm, [v4, v6]), { ...before, state: 'stopped' }, 'gone from h1: stopped there, its addresses kept');
      await h2.reconcile([[domain(vm, 'running'), []]]);
      assert.deepEqual(await view(vm, [v4, v6]), moved, "h2 publishes the VM with the addresses of h1's entry");
    }
    await h2.reconcile([[domain(vm, 'running'), []]]);
    await h1.reconcile([]);
    assert.deepEqual(await view(vm, [v4, v6]), moved, 'and at every reconcile after');

    // Until the VM shows a different one: a new IPv4 in its ARP replaces v4; v6 stays (ARP says nothing of IPv6).
    const v4b = v4.replace(/1$/, '9');
    h2.arp(vm, v4b);
    await h2.reconcile([[domain(vm, 'running'), []]]);
    assert.deepEqual(await view(vm, [v4, v6, v4b]), { host: 'h2', state: 'running', addresses: [v4b, v6].sort(), addr: [null, vm, vm] });
  });
}

test('what the directory holds for an arriving VM: its entry, less what another VM took since; a VM of the new host keeps its own', async () => {
  registry = new Registry(r.redis);
  const h1 = new HostAgent('h1');
  h1.arp('app', '10.3.0.1', '10.3.0.2');
  await h1.reconcile([[domain('app', 'running'), []]]);
  await r.redis.hset(K.addr, '10.3.0.2', 'other'); // another VM holds it now
  assert.deepEqual(await registry.heldAddresses(['app', 'nobody']), new Map([['app', ['10.3.0.1']]]));

  // On h3, `local` already announced 10.3.0.1: the arriving VM does not take it from it.
  const h3 = new HostAgent('h3');
  h3.arp('local', '10.3.0.1');
  await h3.reconcile([[domain('local', 'running'), []]]);
  await r.redis.hset(K.addr, '10.3.0.1', 'app'); // as if h1 wrote it after
  await h3.reconcile([
    [domain('local', 'running'), []],
    [domain('app', 'running'), []],
  ]);
  assert.deepEqual((await registry.vms()).find((v) => v.name === 'app')!.addresses, []);
  assert.deepEqual((await registry.vms()).find((v) => v.name === 'local')!.addresses, ['10.3.0.1']);
});

test('forget: VMs stopped before the cutoff go with their addresses; running and recently stopped VMs, and addresses others took, stay', async () => {
  const reg = new Registry(r.redis);
  await reg.putVm('f-old', vm('h1', 'running', ['10.9.0.1', '10.9.0.2']), 1000);
  await reg.vmGone('f-old', 'h1', 2000);
  await reg.putVm('f-taker', vm('h2', 'running', ['10.9.0.2']), 2500); // took one of f-old's addresses
  await reg.putVm('f-recent', vm('h1', 'running', ['10.9.0.3']), 1000);
  await reg.vmGone('f-recent', 'h1', 9000);
  await reg.putVm('f-up', vm('h1', 'running', ['10.9.0.4']), 1000);
  await r.redis.hset(K.addr, '10.9.0.9', 'f-ghost'); // a VM the directory never had
  const gone = await reg.forget(5000);
  assert.equal(gone.vms, 1);
  assert.ok(gone.addresses >= 1, 'the ghost address (and any an earlier test left without its VM)');
  const names = (await reg.vms()).map((v) => v.name).filter((n) => n.startsWith('f-'));
  assert.deepEqual(names, ['f-recent', 'f-taker', 'f-up']);
  assert.equal(await r.redis.exists(K.vm('f-old')), 0);
  const addrs = await reg.addresses();
  assert.equal(addrs.get('10.9.0.1'), undefined, "f-old's own address is gone");
  assert.equal(addrs.get('10.9.0.2'), 'f-taker', 'the address another VM took stays');
  assert.equal(addrs.get('10.9.0.3'), 'f-recent');
  assert.equal(addrs.get('10.9.0.9'), undefined, 'an address of no VM is dropped');
  assert.deepEqual(await reg.forget(5000), { vms: 0, addresses: 0 }, 'a second sweep finds nothing');

  // Through retention: the VMs stopped before the oldest period kept are forgotten, at most once an hour.
  const store = new Store(r.redis);
  const P = 1_900_000_000;
  await reg.registerHost('hf', hostRecord());
  for (const p of [P, P + 30, P + 60]) await store.apply(report('hf', p, [['f-up>x', 1, 1]]));
  await reg.vmGone('f-recent', 'h1', (P + 10) * 1000);
  let told: { vms: number } | undefined;
  assert.ok((await store.trim(2, Date.now(), (g) => (told = g))) >= 1);
  assert.equal(await r.redis.zscore(K.periods, String(P)), null, 'the oldest of the three periods is trimmed');
  assert.ok((told?.vms ?? 0) >= 1, 'f-recent stopped before the oldest period kept (P + 30), with any VM an earlier test stopped');
  assert.equal(await r.redis.exists(K.vm('f-recent')), 0);
  await reg.vmGone('f-up', 'h1', 1);
  await store.trim(2, Date.now());
  assert.equal(await r.redis.exists(K.vm('f-up')), 1, 'within the hour: no second sweep');
  await store.trim(2, Date.now() + 3_600_000);
  assert.equal(await r.redis.exists(K.vm('f-up')), 0, 'an hour later: swept');
});
