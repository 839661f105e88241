import { test } from 'node:test';
import assert from 'node:assert/strict';
import { labRoutes } from '../../src/lab/agents.js';
import { hosts, labMigrateUri, type LabSettings } from '../../src/lab/topology.js';
import { uriShapeProblem } from '../../src/config/routes.js';
import { NO_ROUTES, RouteVetter, type RoutePolicy } from '../../src/manager/trust.js';

const policy = (p: Partial<RoutePolicy>) => new RouteVetter({ ...NO_ROUTES, ...p });
const tls = policy({ hostUris: ['qemu+tls://*.hv.example/system'], migrateNetworks: ['10.0.1.0/24', 'fd00:1::/64'] });
const refused = (v: ReturnType<RouteVetter['vet']>, why: RegExp) => {
  assert.equal(v.ok, false);
  if (!v.ok) assert.match(v.why, why);
};

test('transports that run a program or stay local, query parameters and odd paths are refused whatever the policy says', () => {
  const open = policy({ hostUris: ['qemu+tls://*/system', 'qemu+ssh://root@*/system'] });
  for (const [uri, why] of [
    ['qemu+ext:///system?command=/bin/sh', /ext transport runs a program/],
    ['qemu+ext://h/system', /ext transport runs a program/],
    ['qemu:///system', /only the machine it runs on/],
    ['qemu+unix:///system?socket=/tmp/evil', /only the machine it runs on/],
    ['qemu+tls://h.hv.example/system?no_verify=1', /query parameters \(no_verify\)/],
    ['qemu+ssh://root@h/system?keyfile=/root/.ssh/id&command=x', /query parameters \(keyfile, command\)/],
    ['qemu+ssh://root@h/system?pkipath=/etc/pki/x', /query parameters \(pkipath\)/],
    ['qemu+tls://h/system?pkipath=/etc/pki/x&no_verify=1', /query parameters \(pkipath, no_verify\)/],
    ['qemu+tls://h/system?pkipath=relative/dir', /query parameters \(pkipath\)/],
    ['qemu+tls://h/system?pkipath=/etc/../tmp', /query parameters \(pkipath\)/],
    ['qemu+tls://h/session', /path \/session/],
    ['qemu+tls://h/system#frag', /fragment/],
    ['qemu+tls://u:pw@h/system', /password/],
    ['qemu+tls://u@h/system', /only an ssh transport takes a user/],
    ['xen+tls://h/system', /transport xen\+tls/],
    ['not a uri', /not a URI/],
  ] as const) {
    assert.ok(uriShapeProblem(uri), uri);
    refused(open.vet('h', uri), why);
  }
  assert.equal(open.vet('h', 'qemu+ssh://root@h/system').ok, true);
  // The client's own certificates (libvirt's pkipath) on a TLS URI, named exactly by the manager's configuration.
  const pki = 'qemu+tls://h/system?pkipath=/var/lib/vc/pki';
  assert.equal(uriShapeProblem(pki), undefined);
  assert.equal(policy({ hostRoutes: { h: { uri: pki } } }).vet('h', pki).ok, true);
  refused(policy({ hostRoutes: { h: { uri: pki } } }).vet('h', 'qemu+tls://h/system?pkipath=/tmp/mine'), /is not the one manager.hostRoutes gives it/);
});

test('patterns: `*` is one label, the rest must match exactly', () => {
  assert.deepEqual(tls.vet('hv01', 'qemu+tls://hv01.hv.example/system'), { ok: true, route: { uri: 'qemu+tls://hv01.hv.example/system' } });
  assert.equal(tls.vet('hv01', 'qemu+tls://HV01.hv.example/system').ok, true, 'host names are case-insensitive');
  for (const uri of [
    'qemu+tls://evil.example/system',
    'qemu+tls://a.b.hv.example/system',
    'qemu+tls://hv01.hv.example:1/system',
    'qemu+tcp://hv01.hv.example/system',
    'qemu+tls://hv01.hv.example.evil.example/system',
  ]) {
    refused(tls.vet('hv01', uri), /matches no manager.hostUris pattern/);
  }
});

test("migration URIs: tcp://ADDRESS[:PORT] in a configured network, or empty (the libvirt URI's host)", () => {
  const uri = 'qemu+tls://hv01.hv.example/system';
  assert.deepEqual(tls.vet('hv01', uri, 'tcp://10.0.1.5:49152'), { ok: true, route: { uri, migrateUri: 'tcp://10.0.1.5:49152' } });
  assert.equal(tls.vet('hv01', uri, 'tcp://[fd00:1::5]').ok, true);
  assert.deepEqual(tls.vet('hv01', uri, ''), { ok: true, route: { uri } });
  refused(tls.vet('hv01', uri, 'tcp://203.0.113.9'), /not in manager.migrateNetworks \(10.0.1.0\/24, fd00:1::\/64\)/);
  refused(tls.vet('hv01', uri, 'tcp://attacker.example'), /not in manager.migrateNetworks/);
  for (const bad of ['rdma://10.0.1.5', 'tcp://10.0.1.5/path', 'tcp://u@10.0.1.5', 'tcp://10.0.1.5?x=1']) refused(tls.vet('hv01', uri, bad), /tcp:\/\/ADDRESS\[:PORT\]/);
});

test('an explicit map: the registry must say exactly what it says; the map wins over patterns', () => {
  const v = policy({ ...tls.policy, hostRoutes: { hv02: { uri: 'qemu+tls://hv02.hv.example/system', migrateUri: 'tcp://migr-hv02.example' } } });
  assert.equal(v.vet('hv02', 'qemu+tls://hv02.hv.example/system', 'tcp://migr-hv02.example').ok, true, 'a name, vouched for by the map');
  refused(v.vet('hv02', 'qemu+tls://hv03.hv.example/system'), /not the one manager.hostRoutes gives it \(qemu\+tls:\/\/hv02/);
  refused(v.vet('hv02', 'qemu+tls://hv02.hv.example/system', 'tcp://other.example'), /not the one manager.hostRoutes gives it \(tcp:\/\/migr-hv02.example\)/);
  refused(v.vet('__proto__', 'qemu+tls://x/system'), /matches no manager.hostUris pattern/);
});

test('no policy: nothing is trusted, and the message says what to configure; bad entries are reported', () => {
  refused(new RouteVetter(NO_ROUTES).vet('hv01', 'qemu+tls://hv01.hv.example/system'), /none is configured\): add the host to manager.hostRoutes/);
  const bad = policy({ hostUris: ['qemu+ext://*/system', 'qemu+tls://h/system?*', 'qemu*://h/system'], migrateNetworks: ['10.0.0.0/33', 'x'] });
  assert.equal(bad.problems.length, 5, bad.problems.join('\n'));
  assert.equal(bad.empty, true);
});

test("a lab's manager vouches for exactly the routes its agents register (qemu+tcp://10.L.0.k/system, tcp://10.L.s.k)", () => {
  const lab = (index: number): LabSettings => ({ name: `l${index}`, index, sites: 2, hostsPerSite: 2, delayMs: 10, rateMbit: 1000, redisPort: 6390 });
  const v = new RouteVetter(labRoutes(lab(7)));
  assert.deepEqual(v.problems, []);
  for (const h of hosts(lab(7))) assert.deepEqual(v.vet(h.name, h.uri, labMigrateUri(h)), { ok: true, route: { uri: h.uri, migrateUri: labMigrateUri(h) } });
  const other = hosts(lab(8))[0]!;
  refused(v.vet(other.name, other.uri, labMigrateUri(other)), /not the one manager.hostRoutes gives it/);
});
