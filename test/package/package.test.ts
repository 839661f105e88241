import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { AGENT_NODE_FLAGS } from '../../src/agent/config.js';
import { packageRoot } from '../../src/paths.js';
import { uniqueName } from '../helpers/names.js';
import { LAYOUT_VERSION } from '../../src/sensor/layout.js';

// The Debian package, for real: built from this checkout, linted, installed on
// this machine with dpkg, exercised, removed and purged. The machine is left as
// it was found (the checkout's /usr/bin/virt-cohort symlink included), also when
// a step fails: `after` purges and restores whatever the steps changed.

const VERSION = (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
const DEB = join(packageRoot, 'dist', `virt-cohort_${VERSION}_amd64.deb`);
const LIB = '/usr/lib/virt-cohort';
const UNITS = ['virt-cohort-agent.service', 'virt-cohort-manager.service'];
const PIN_ROOT = '/sys/fs/bpf/virt-cohort';
// Paths the package or its scripts create that hold nothing but ours.
const OURS = [
  LIB,
  '/etc/virt-cohort',
  '/var/lib/virt-cohort',
  '/usr/share/doc/virt-cohort',
  PIN_ROOT,
  '/run/virt-cohort/agent.sock',
  '/usr/bin/virt-cohort',
  '/etc/libvirt/hooks/qemu.d/virt-cohort',
  '/etc/libvirt/hooks/virt-cohort.socket',
  ...UNITS.flatMap((u) => [
    `/lib/systemd/system/${u}`,
    `/etc/systemd/system/multi-user.target.wants/${u}`,
    `/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/${u}`,
    `/var/lib/systemd/deb-systemd-helper-enabled/${u}.dsh-also`,
    `/var/lib/systemd/deb-systemd-helper-masked/${u}`,
  ]),
];
// Left by a run that was killed before its `after`: its installation may be purged.
const MARKER = '/run/virt-cohort-package-test';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}
function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Result {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: opts.timeoutMs ?? 120_000, env: { ...process.env, ...opts.env }, cwd: packageRoot });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
function ok(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): string {
  const r = sh(cmd, args, opts);
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}
const has = (cmd: string) => sh('sh', ['-c', `command -v ${cmd}`]).code === 0;
const present = (p: string) => {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
};
/** dpkg knows the package (installed, or removed with its configuration left). */
const known = () => {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax, not a template
  const r = sh('dpkg-query', ['-W', '-f=${Status}', 'virt-cohort']);
  return r.code === 0 && r.stdout.trim() !== '' && !/not-installed/.test(r.stdout);
};
const dpkgEnv = { DEBIAN_FRONTEND: 'noninteractive' };

/** The deb's entries: path (without the leading .), type and mode. */
function contents(): { path: string; type: string; mode: number; target?: string }[] {
  return ok('dpkg-deb', ['-c', DEB])
    .trim()
    .split('\n')
    .map((line) => {
      const m = /^([dl-])([rwxsStT-]{9}) \S+\s+\d+ \S+ \S+ \.(\/\S*)(?: -> (\S+))?$/.exec(line);
      assert.ok(m, `unexpected dpkg-deb -c line: ${line}`);
      const bits = m[2]!;
      let mode = 0;
      for (let i = 0; i < 9; i++) if (bits[i] !== '-') mode |= 1 << (8 - i);
      return { path: m[3]!.replace(/\/$/, '') || '/', type: m[1]!, mode, target: m[4] };
    });
}

/** The unit's CapabilityBoundingSet as a setpriv --bounding-set argument. */
function boundingSet(unit: string): string {
  const line = /^CapabilityBoundingSet=(.*)$/m.exec(readFileSync(unit, 'utf8'))?.[1] ?? '';
  return [
    '-all',
    ...line
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`),
  ].join(',');
}

/** A parser of our own for where systemd-analyze is missing: known sections and keys, absolute executables. */
function checkUnit(path: string): string[] {
  const keys: Record<string, string[]> = {
    Unit: ['Description', 'Documentation', 'After', 'Wants', 'StartLimitIntervalSec', 'StartLimitBurst'],
    Service: [
      'Type',
      'ExecStartPre',
      'ExecStart',
      'Restart',
      'RestartSec',
      'TimeoutStopSec',
      'StateDirectory',
      'StateDirectoryMode',
      'RuntimeDirectory',
      'RuntimeDirectoryMode',
      'UMask',
      'CapabilityBoundingSet',
      'NoNewPrivileges',
      'LimitMEMLOCK',
      'ProtectSystem',
      'ReadWritePaths',
      'ProtectHome',
      'PrivateTmp',
      'PrivateDevices',
      'ProtectKernelTunables',
      'ProtectKernelModules',
      'ProtectKernelLogs',
      'ProtectControlGroups',
      'ProtectClock',
      'ProtectHostname',
      'RestrictNamespaces',
      'RestrictRealtime',
      'RestrictSUIDSGID',
      'LockPersonality',
      'SystemCallArchitectures',
      'RestrictAddressFamilies',
    ],
    Install: ['WantedBy'],
  };
  const problems: string[] = [];
  let section = '';
  for (const [i, raw] of readFileSync(path, 'utf8').split('\n').entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const s = /^\[(\w+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      if (!keys[section]) problems.push(`${path}:${i + 1}: unknown section ${line}`);
      continue;
    }
    const kv = /^(\w+)=(.*)$/.exec(line);
    if (!kv) {
      problems.push(`${path}:${i + 1}: not KEY=VALUE`);
      continue;
    }
    if (!keys[section]?.includes(kv[1]!)) problems.push(`${path}:${i + 1}: unknown key ${kv[1]} in [${section}]`);
    if (kv[1]!.startsWith('Exec')) {
      const exe = kv[2]!.split(/\s+/)[0]!;
      if (!exe.startsWith('/') || sh('test', ['-x', exe]).code !== 0) problems.push(`${path}:${i + 1}: ${exe} is not an executable absolute path`);
    }
  }
  return problems;
}

const skip =
  process.getuid?.() !== 0
    ? 'needs root (dpkg -i)'
    : !has('dpkg-deb') || !has('lintian')
      ? 'needs dpkg-dev and lintian (npm run setup)'
      : known() && !existsSync(MARKER)
        ? 'virt-cohort is installed as a package on this machine: not touching it'
        : [PIN_ROOT, '/etc/virt-cohort', '/var/lib/virt-cohort'].some((p) => present(p) && !existsSync(MARKER))
          ? `virt-cohort state exists on this machine (${PIN_ROOT}, /etc/virt-cohort or /var/lib/virt-cohort): not touching it`
          : false;

describe('the Debian package', { skip, concurrency: 1, timeout: 300_000 }, () => {
  const saved = mkdtempSync(join(tmpdir(), 'vc-package-test-'));
  const tap = `vcpk${uniqueName('t', 6)}`;
  const before0 = new Map<string, boolean>();
  let link: { kind: 'symlink'; target: string } | { kind: 'file' } | { kind: 'absent' } = { kind: 'absent' };
  let entries: ReturnType<typeof contents> = [];

  const restore = () => {
    if (known()) sh('dpkg', ['--purge', 'virt-cohort'], { env: dpkgEnv });
    const bin = '/usr/bin/virt-cohort';
    if (link.kind === 'symlink') {
      rmSync(bin, { force: true });
      symlinkSync(link.target, bin);
    } else if (link.kind === 'file') cpSync(join(saved, 'virt-cohort'), bin, { preserveTimestamps: true });
    else rmSync(bin, { force: true });
    for (const f of ['/etc/libvirt/hooks/qemu.d/virt-cohort', '/etc/libvirt/hooks/virt-cohort.socket']) {
      const copy = join(saved, f.replaceAll('/', '_'));
      if (existsSync(copy)) cpSync(copy, f, { preserveTimestamps: true });
    }
  };

  before(() => {
    if (existsSync(MARKER)) {
      // A killed earlier run: its saved state is in the marker.
      const old = JSON.parse(readFileSync(MARKER, 'utf8')) as { saved: string; link: typeof link; tap: string };
      link = old.link;
      cpSync(old.saved, saved, { recursive: true });
      restore();
      sh('ip', ['link', 'del', old.tap]);
      rmSync(PIN_ROOT, { recursive: true, force: true });
      rmSync(old.saved, { recursive: true, force: true });
      rmSync(MARKER);
    }
    const bin = '/usr/bin/virt-cohort';
    if (present(bin)) {
      if (lstatSync(bin).isSymbolicLink()) link = { kind: 'symlink', target: readlinkSync(bin) };
      else {
        link = { kind: 'file' };
        cpSync(bin, join(saved, 'virt-cohort'), { preserveTimestamps: true });
      }
    }
    for (const f of ['/etc/libvirt/hooks/qemu.d/virt-cohort', '/etc/libvirt/hooks/virt-cohort.socket']) {
      if (present(f)) cpSync(f, join(saved, f.replaceAll('/', '_')), { preserveTimestamps: true });
    }
    writeFileSync(MARKER, JSON.stringify({ saved, link, tap }));
    ok('ip', ['link', 'add', tap, 'type', 'veth', 'peer', 'name', `${tap}p`]);
    ok('ip', ['link', 'set', tap, 'up']);
  });

  after(() => {
    restore();
    sh('ip', ['link', 'del', tap]);
    rmSync(PIN_ROOT, { recursive: true, force: true });
    rmSync(saved, { recursive: true, force: true });
    rmSync(MARKER, { force: true });
  });

  it('builds with dpkg-deb from the checkout, with the dependencies the code needs', () => {
    const out = ok('sh', [join(packageRoot, 'src/package/build.sh')], { timeoutMs: 240_000 });
    assert.match(out, /package: done/);
    const control = ok('dpkg-deb', ['-f', DEB]);
    const field = (k: string) => new RegExp(`^${k}: (.*)$`, 'm').exec(control)?.[1] ?? '';
    assert.equal(field('Package'), 'virt-cohort');
    assert.equal(field('Version'), VERSION);
    assert.equal(field('Architecture'), 'amd64');
    const depends = field('Depends');
    for (const d of ['libc6', 'libstdc++6', 'libvirt0', 'libpcap0.8', 'nodejs (>= 20)', 'iproute2', 'bpftool', 'libvirt-clients']) {
      assert.ok(
        depends.split(/,\s*/).some((x) => x === d || x.startsWith(`${d} `)),
        `Depends has ${d}: ${depends}`,
      );
    }
    assert.doesNotMatch(depends, /nodejs \(<</, 'every addon is Node-API: any Node.js major from 20 on loads it');
    assert.doesNotMatch(depends, /redis|libbpf/, 'production code runs no redis-cli; the bpf addon links no libbpf');
    assert.equal(field('Recommends'), 'libvirt-daemon-system');
    entries = contents();
    const paths = new Set(entries.map((e) => e.path));
    for (const p of [
      `${LIB}/dist/src/cli/main.js`,
      `${LIB}/dist/bpf/counter.bpf.o`,
      `${LIB}/package.json`,
      `${LIB}/hooks/qemu`,
      `${LIB}/node_modules/bpf/prebuilds/linux-x64/node.napi.node`,
      `${LIB}/dist/native/vc_pcap.node`,
      `${LIB}/node_modules/@unraid/libvirt/build/Release/libvirt.node`,
      `${LIB}/libexec/preflight`,
      '/usr/bin/virt-cohort',
      '/etc/libvirt/hooks/qemu.d/virt-cohort',
      '/etc/virt-cohort/config.yaml',
      ...UNITS.map((u) => `/lib/systemd/system/${u}`),
    ]) {
      assert.ok(paths.has(p), `the package holds ${p}`);
    }
    assert.ok(![...paths].some((p) => /node_modules\/(typescript|@typescript|tsx|esbuild)(\/|$)/.test(p)), 'no development dependency');
    const lab = [...paths].filter((p) => /\/dist\/src\/(lab|demo)(\/|$)|\/dist\/src\/cli\/(lab|demo)\.js$|\/(guest|wan)\//.test(p));
    assert.deepEqual(lab, [], 'the lab, the demo and the guest build are not what a host runs');
    const conffiles = ok('dpkg-deb', ['-I', DEB, 'conffiles']).trim().split('\n').sort();
    assert.deepEqual(conffiles, ['/etc/libvirt/hooks/qemu.d/virt-cohort', '/etc/virt-cohort/config.yaml']);
    for (const e of entries) before0.set(e.path, present(e.path));
  });

  it('passes lintian with no error', () => {
    const r = sh('lintian', ['--tag-display-limit', '0', DEB], { timeoutMs: 180_000 });
    const tags = r.stdout.split('\n').filter((l) => /^[EWIPX]: /.test(l));
    const errors = tags.filter((l) => l.startsWith('E: '));
    assert.deepEqual(errors, [], `lintian errors:\n${r.stdout}${r.stderr}`);
    assert.ok(r.code === 0 || r.code === 2 || errors.length === 0, `lintian itself failed (${r.code}): ${r.stderr}`);
    for (const w of tags) process.stdout.write(`# lintian: ${w}\n`);
  });

  it('installs with dpkg -i: every file where the package says, the state directory, the libvirtd note', () => {
    const r = sh('dpkg', ['-i', DEB], { env: dpkgEnv });
    assert.equal(r.code, 0, `dpkg -i failed:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout + r.stderr, /restart it once \(systemctl restart libvirtd\)/, 'postinst says libvirtd must be restarted for the hook');
    for (const e of entries) {
      const st = lstatSync(e.path);
      // statSync: /lib is a symlink to /usr/lib on a merged /usr.
      if (e.type === 'd') {
        assert.ok(statSync(e.path).isDirectory(), `${e.path} is a directory`);
        continue;
      }
      if (e.type === 'l') {
        assert.equal(readlinkSync(e.path), e.target, `${e.path} links to ${e.target}`);
        continue;
      }
      assert.ok(st.isFile(), `${e.path} is a file`);
      assert.equal(st.mode & 0o7777, e.mode, `${e.path} has mode ${e.mode.toString(8)}`);
    }
    assert.equal(ok('dpkg', ['--verify', 'virt-cohort']), '', 'every installed file matches its md5sum');
    const state = lstatSync('/var/lib/virt-cohort');
    assert.ok(state.isDirectory());
    assert.equal(state.mode & 0o777, 0o700, '/var/lib/virt-cohort is root-only');
    assert.match(readFileSync('/proc/mounts', 'utf8'), / \/sys\/fs\/bpf bpf /, 'bpffs is mounted');
    assert.equal(readFileSync('/etc/libvirt/hooks/qemu.d/virt-cohort', 'utf8'), readFileSync(join(packageRoot, 'hooks/qemu'), 'utf8'));
    assert.match(readFileSync('/usr/bin/virt-cohort', 'utf8'), /exec \/usr\/bin\/node \/usr\/lib\/virt-cohort\/dist\/src\/cli\/main\.js/);
    for (const u of UNITS) assert.ok(present(`/etc/systemd/system/multi-user.target.wants/${u}`), `${u} is enabled`);
  });

  it('runs the installed virt-cohort: --version, config check and doctor where they exist', (t) => {
    assert.equal(ok('/usr/bin/virt-cohort', ['--version']).trim(), VERSION);
    const lab = sh('/usr/bin/virt-cohort', ['lab', 'up']);
    assert.equal(lab.code, 2, `virt-cohort lab up: ${lab.stderr}`);
    assert.match(lab.stderr, /the lab is not part of this installation/);
    const help = ok('/usr/bin/virt-cohort', ['--help']);
    if (/^\s+config\b/m.test(help)) {
      ok('/usr/bin/virt-cohort', ['config', 'check', '/etc/virt-cohort/config.yaml']);
    } else t.diagnostic('virt-cohort config check does not exist yet: not run');
    if (/^\s+doctor\b/m.test(help)) {
      // Checks fail on this machine (no agent runs): any exit code, but the JSON report.
      const r = sh('/usr/bin/virt-cohort', ['doctor', '--json'], { timeoutMs: 60_000 });
      assert.doesNotThrow(() => JSON.parse(r.stdout), `doctor --json printed JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
    } else t.diagnostic('virt-cohort doctor does not exist yet: not run');
  });

  it('has valid, hardened units that run the agent with its Node flags', (t) => {
    const paths = UNITS.map((u) => `/lib/systemd/system/${u}`);
    if (has('systemd-analyze')) {
      const r = sh('systemd-analyze', ['verify', ...paths]);
      assert.equal(r.code, 0, `systemd-analyze verify:\n${r.stdout}${r.stderr}`);
      assert.equal((r.stdout + r.stderr).trim(), '', 'systemd-analyze verify has nothing to say');
      for (const p of paths) {
        const s = sh('systemd-analyze', ['security', '--offline=true', p]);
        t.diagnostic(`${p}: ${/Overall exposure level.*$/m.exec(s.stdout)?.[0] ?? s.stderr.trim()}`);
      }
    } else {
      t.diagnostic('systemd-analyze is not installed: units checked by our own parser');
      assert.deepEqual(paths.flatMap(checkUnit), []);
    }
    const agent = readFileSync(paths[0]!, 'utf8');
    const manager = readFileSync(paths[1]!, 'utf8');
    assert.ok(agent.includes(`ExecStart=/usr/bin/node ${AGENT_NODE_FLAGS.join(' ')} ${LIB}/dist/src/cli/main.js agent --config /etc/virt-cohort/config.yaml`));
    assert.ok(manager.includes(`ExecStart=/usr/bin/node ${LIB}/dist/src/cli/main.js manager --config /etc/virt-cohort/config.yaml`));
    for (const unit of [agent, manager]) {
      for (const k of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'Restart=on-failure', 'StartLimitBurst=', 'RestartSec=', 'ProtectHome=']) {
        assert.ok(unit.includes(k), `${k} in every unit`);
      }
    }
    assert.match(agent, /^ReadWritePaths=\/var\/lib\/virt-cohort \/run\/virt-cohort \/sys\/fs\/bpf$/m);
    assert.match(manager, /^CapabilityBoundingSet=$/m, 'the manager has no capability');
  });

  it('gives the agent exactly the capabilities the sensor needs, and preflight names a missing one', () => {
    const caps = boundingSet('/lib/systemd/system/virt-cohort-agent.service');
    // The installed sensor, as the agent uses it, under the unit's bounding set:
    // load and pin, attach, attach again over its own filters, read, detach, attach.
    const probe = join(saved, 'probe.mjs');
    writeFileSync(
      probe,
      `
      const { EbpfSensor } = await import('${LIB}/dist/src/sensor/ebpf.js');
      const s = await EbpfSensor.open({ pinRoot: '${PIN_ROOT}', object: '${LIB}/dist/bpf/counter.bpf.o' });
      await s.attach('${tap}', 5); await s.attach('${tap}', 5); await s.read(); await s.detach('${tap}'); await s.attach('${tap}', 6);
      await s.close(); console.log('PROBE-OK');`,
    );
    const r = sh('setpriv', ['--bounding-set', caps, '--inh-caps', '-all', '--', '/usr/bin/node', probe]);
    assert.match(r.stdout, /PROBE-OK/, `the sensor works with ${caps}:\n${r.stdout}\n${r.stderr}`);
    for (const hook of ['ingress', 'egress']) assert.match(ok('tc', ['filter', 'show', 'dev', tap, hook]), /pref 49344 bpf .*handle 0xc0c0 .*vc_(from|to)_vm/);
    // Someone else's filter on the same tap, at another priority: removal must leave it.
    ok('tc', ['filter', 'add', 'dev', tap, 'ingress', 'pref', '100', 'handle', '0x1', 'bpf', 'da', 'object-pinned', `${PIN_ROOT}/v${LAYOUT_VERSION}/progs/vc_from_vm`]);

    const preflight = `${LIB}/libexec/preflight`;
    const good = sh('setpriv', ['--bounding-set', caps, '--inh-caps', '-all', '--', preflight, 'agent']);
    assert.equal(good.code, 0, `preflight passes with the unit's capabilities:\n${good.stderr}`);
    const less = caps
      .split(',')
      .filter((c) => c !== '+net_admin')
      .join(',');
    const bad = sh('setpriv', ['--bounding-set', less, '--inh-caps', '-all', '--', preflight, 'agent']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /needs CAP_NET_ADMIN/);
    assert.match(bad.stderr, /systemctl cat virt-cohort-agent/);
  });

  it('an upgrade keeps an edited configuration, our filters and our pins', () => {
    const conf = '/etc/virt-cohort/config.yaml';
    const edited = `${readFileSync(conf, 'utf8')}# edited by the operator\n`;
    writeFileSync(conf, edited);
    const r = sh('dpkg', ['-i', DEB], { env: dpkgEnv });
    assert.equal(r.code, 0, `dpkg -i over the installed package failed:\n${r.stdout}\n${r.stderr}`);
    assert.equal(readFileSync(conf, 'utf8'), edited, 'the conffile keeps the edit');
    assert.ok(present(`${PIN_ROOT}/v${LAYOUT_VERSION}/maps/vc_slots`), 'pins stay: counts survive the agent restart');
    for (const hook of ['ingress', 'egress']) assert.match(ok('tc', ['filter', 'show', 'dev', tap, hook]), /pref 49344 bpf/);
  });

  it('dpkg -r removes our tc filters and pins only, and keeps the configuration', () => {
    const r = sh('dpkg', ['-r', 'virt-cohort'], { env: dpkgEnv });
    assert.equal(r.code, 0, `dpkg -r failed:\n${r.stdout}\n${r.stderr}`);
    for (const hook of ['ingress', 'egress']) assert.doesNotMatch(ok('tc', ['filter', 'show', 'dev', tap, hook]), /pref 49344/, `our ${hook} filter is gone`);
    assert.match(ok('tc', ['filter', 'show', 'dev', tap, 'ingress']), /pref 100 bpf/, "someone else's filter stays");
    assert.ok(!present(PIN_ROOT), 'our pins are gone');
    assert.ok(!present(LIB) && !present('/usr/bin/virt-cohort'), 'the program is gone');
    assert.ok(present('/etc/virt-cohort/config.yaml'), 'the configuration stays until purge');
  });

  it('dpkg --purge leaves nothing of ours', () => {
    const r = sh('dpkg', ['--purge', 'virt-cohort'], { env: dpkgEnv });
    assert.equal(r.code, 0, `dpkg --purge failed:\n${r.stdout}\n${r.stderr}`);
    assert.ok(!known(), 'dpkg no longer knows the package');
    assert.deepEqual(OURS.filter(present), [], 'nothing of ours remains');
    assert.deepEqual(
      entries.filter((e) => e.type !== 'd' && present(e.path)).map((e) => e.path),
      [],
      'no file of the package remains',
    );
    // Directories the package brought (e.g. /etc/libvirt/hooks/qemu.d) go; shared ones stay.
    assert.deepEqual(
      entries.filter((e) => e.type === 'd' && present(e.path) !== before0.get(e.path)).map((e) => e.path),
      [],
    );
    assert.ok(present(dirname('/etc/libvirt/hooks/qemu.d')), "libvirt's hook directory stays");
  });
});
