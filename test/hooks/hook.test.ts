import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readDomainXml } from '../../src/libvirt/domxml.js';
import { packageRoot } from '../../src/paths.js';
import { waitFor } from '../../src/util/exec.js';
import { manyElements, UUID, WITH_METADATA_NIC } from '../helpers/domxml.js';

const HOOK = join(packageRoot, 'hooks', 'qemu');
const XML = `<domain type='qemu'><name>vc-lab-vm1</name><uuid>0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0</uuid>
<devices><interface type='bridge'><mac address='52:54:00:65:00:01'/><source bridge='vmbr'/><target dev='vnet7'/></interface></devices></domain>`;

interface Run {
  code: number | null;
  ms: number;
  stdout: string;
}

/** Runs the hook as libvirt would; stdin stays open when `input` is undefined. */
function runHook(args: string[], socket: string, input?: string): Promise<Run> {
  const started = Date.now();
  const child = spawn(HOOK, args, { env: { ...process.env, VIRT_COHORT_HOOK_SOCKET: socket }, stdio: ['pipe', 'pipe', 'ignore'] });
  let stdout = '';
  child.stdout.on('data', (c) => (stdout += c));
  if (input !== undefined) child.stdin.end(input);
  return new Promise((resolve) =>
    child.on('exit', (code) => {
      child.stdin.destroy();
      resolve({ code, ms: Date.now() - started, stdout });
    }),
  );
}

/** Resolves once the agent stand-in holds `n` events (the hook may exit before its connection's end is read). */
const received = (events: unknown[], n: number) => waitFor(`${n} hook event(s)`, async () => (events.length >= n ? true : undefined), 5000, 10);

async function agent(): Promise<{ server: Server; socket: string; events: Record<string, unknown>[]; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'vc-hook-'));
  const socket = join(dir, 'agent.sock');
  const events: Record<string, unknown>[] = [];
  const server = createServer((c) => {
    let buf = '';
    c.on('data', (d) => (buf += d));
    c.on('end', () => events.push(JSON.parse(buf) as Record<string, unknown>));
  });
  await new Promise<void>((r) => server.listen(socket, r));
  return { server, socket, events, dir };
}

/** Runs `fn` with a listening agent socket, then removes it. */
async function withAgent(fn: (a: Awaited<ReturnType<typeof agent>>) => Promise<void>): Promise<void> {
  const a = await agent();
  try {
    await fn(a);
  } finally {
    a.server.close();
    await rm(a.dir, { recursive: true, force: true });
  }
}

test('tells the agent which VM started, with its UUID, MAC and tap, and prints nothing', () =>
  withAgent(async (a) => {
    const r = await runHook(['vc-lab-vm1', 'started', 'begin', '-'], a.socket, XML);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, '', 'stdout would replace the domain XML for migrate/restore');
    await received(a.events, 1);
    assert.equal(a.events.length, 1);
    assert.deepEqual(
      { ...a.events[0], at: 0 },
      {
        v: 1,
        source: 'hook',
        domain: 'vc-lab-vm1',
        operation: 'started',
        subOperation: 'begin',
        extra: '-',
        at: 0,
        uuid: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0',
        interfaces: [{ mac: '52:54:00:65:00:01', tap: 'vnet7' }],
      },
    );
  }));

test('exits 0 promptly when the agent is down, stdin is garbage, or stdin never closes', async () => {
  const missing = join(tmpdir(), `vc-hook-missing-${process.pid}.sock`);
  for (const [label, input] of [
    ['agent down', XML],
    ['garbage', '\u0000<<not xml'],
    ['stdin left open', undefined],
  ] as const) {
    const r = await runHook(['vm', 'stopped', 'end', '-'], missing, input);
    assert.equal(r.code, 0, label);
    assert.ok(r.ms < 3000, `${label}: took ${r.ms} ms`);
  }
});

test('garbage XML still reaches the agent as an event, and unknown operations are ignored', () =>
  withAgent(async (a) => {
    assert.equal((await runHook(['vm9', 'release', 'end', '-'], a.socket, '<domain><uuid>nope')).code, 0);
    assert.equal((await runHook(['vm9', 'frobnicate', 'begin', '-'], a.socket, XML)).code, 0);
    // A known event after the unknown one had exited: it arrives after anything the unknown one sent.
    assert.equal((await runHook(['marker', 'stopped', 'end', '-'], a.socket, XML)).code, 0);
    await received(a.events, 2);
    assert.deepEqual(a.events.map((e) => [e.domain, e.operation, e.uuid]).sort(), [
      ['marker', 'stopped', '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0'],
      ['vm9', 'release', null],
    ]);
  }));

test('only /domain/devices/interface reaches the agent, read as the agent reads it: an <interface> in metadata does not', () =>
  withAgent(async (a) => {
    assert.equal((await runHook(['vm1', 'started', 'begin', '-'], a.socket, WITH_METADATA_NIC)).code, 0);
    await received(a.events, 1);
    assert.equal(a.events[0]?.uuid, UUID);
    assert.deepEqual(a.events[0]?.interfaces, [{ mac: '52:54:00:65:00:01', tap: 'vnet7' }]);
    assert.deepEqual(
      a.events[0]?.interfaces,
      readDomainXml(WITH_METADATA_NIC).interfaces.map(({ mac, tap }) => ({ mac, tap })),
    );
  }));

test("XML of 4,000 elements, and of 4 MiB, is read within the hook's deadline: the event still goes out", () =>
  withAgent(async (a) => {
    // The deadline timer cannot cut a synchronous parse short: had reading taken longer, the event would be lost.
    for (const n of [4000, 330_000]) {
      const xml = manyElements(n);
      const r = await runHook([`vm-${n}`, 'started', 'begin', '-'], a.socket, xml);
      assert.equal(r.code, 0);
      assert.ok(r.ms < 3000, `${n} elements (${(xml.length / 2 ** 20).toFixed(1)} MiB): ${r.ms} ms`);
    }
    await received(a.events, 2);
    assert.deepEqual(
      a.events.map((e) => [e.domain, e.uuid, e.interfaces]),
      [
        ['vm-4000', UUID, []],
        ['vm-330000', UUID, []],
      ],
    );
  }));
