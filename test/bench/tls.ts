// Migration between sites, memory in clear against memory over TLS, side by side in one run. Not in CI
// (about 3 minutes). Run as root after setup, with nothing else heavy running:
//   node dist/test/bench/tls.js [ROUNDS] [--write-docs]
// (--write-docs: docs/measurements.md block `tls`, README block `tls-summary`).
//
// Lab: 2 sites x 1 host, 1 Gbit/s and 5 ms between the sites, libvirtd on TLS (as every lab); one guest
// of 128 MiB sending 20 datagrams/s. It moves a1 -> b1 and back ROUNDS times each way, alternating plain
// and --tls, so that both see the same machine load; time is virsh's, downtime libvirt's (domjobinfo --completed).
import { labDown, labUp } from '../../src/lab/lab.js';
import { domainName, hosts, labMigrateUri, type LabHost } from '../../src/lab/topology.js';
import { addVm } from '../../src/lab/vm.js';
import { completedJob, migrateDomain } from '../../src/libvirt/virsh.js';
import { uniqueName } from '../helpers/names.js';
import { benchArgs, maybeWriteBlock, README } from './doc.js';
import { median } from './stats.js';

const { writeDocs, args } = benchArgs();
const ROUNDS = Number(args[0] ?? 5);
const name = uniqueName('t');
const log = (s: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

interface Run {
  tls: boolean;
  seconds: number;
  downtimeMs: number;
}

let up = false;
try {
  const lab = await labUp({ name, sites: 2, hostsPerSite: 1, delayMs: 5, rateMbit: 1000, periodSeconds: 5 });
  up = true;
  const [a1, b1] = hosts(lab) as [LabHost, LabHost];
  await addVm(lab.name, { name: 'vm1', host: 'a1', index: 1, pattern: 'idle', cluster: 1, rate: 20, size: 256, memoryMiB: 128, wait: true });
  const dom = domainName(lab, 'vm1');
  const runs: Run[] = [];
  let here = a1;
  for (let i = 0; i < 4 * ROUNDS; i++) {
    // plain, tls, tls, plain, ...: each kind goes each way equally often, and neither always first.
    const tls = [false, true, true, false][i % 4]!;
    const to = here === a1 ? b1 : a1;
    const began = Date.now();
    await migrateDomain(here.uri, dom, to.uri, { migrateUri: labMigrateUri(to), tls });
    const seconds = (Date.now() - began) / 1000;
    const downtimeMs = Number(/^(\d+)/.exec((await completedJob(to.uri, dom))['Total downtime'] ?? '')?.[1] ?? Number.NaN);
    runs.push({ tls, seconds, downtimeMs });
    log(`${here.name} -> ${to.name} ${tls ? 'TLS  ' : 'plain'} ${seconds.toFixed(2)} s, downtime ${downtimeMs} ms`);
    here = to;
  }
  const row = (tls: boolean) => {
    const r = runs.filter((x) => x.tls === tls);
    const t = r.map((x) => x.seconds);
    const d = r.map((x) => x.downtimeMs);
    return { n: r.length, time: median(t), tmin: Math.min(...t), tmax: Math.max(...t), down: median(d), dmin: Math.min(...d), dmax: Math.max(...d) };
  };
  const plain = row(false);
  const tls = row(true);
  const line = (what: string, x: ReturnType<typeof row>) => `| ${what} | ${x.n} | ${x.time.toFixed(2)} s (${x.tmin.toFixed(2)}-${x.tmax.toFixed(2)}) | ${x.down} ms (${x.dmin}-${x.dmax}) |`;
  const table = [
    `Live migration of a 128 MiB TCG guest between two sites (1 Gbit/s, 5 ms), alternating plain and TLS in one run (\`node dist/test/bench/tls.js ${ROUNDS}\`): medians (min-max).`,
    '',
    '| memory stream | migrations | time | downtime |',
    '|---|---|---|---|',
    line('plain (`tcp://`)', plain),
    line('TLS (`virsh migrate --tls`)', tls),
    '',
    `TLS costs ${((tls.time / plain.time - 1) * 100).toFixed(0)} % more time per migration here (median against median).`,
  ].join('\n');
  process.stdout.write(`\n${table}\n`);
  await maybeWriteBlock(writeDocs, 'tls', table);
  await maybeWriteBlock(
    writeDocs,
    'tls-summary',
    `A 128 MiB guest between sites (\`node dist/test/bench/tls.js\`): plain ${plain.time.toFixed(2)} s, downtime ${plain.down} ms; over TLS ${tls.time.toFixed(2)} s, downtime ${tls.down} ms (medians of ${plain.n} each, one run).`,
    README,
  );
} finally {
  if (up) await labDown(name).catch((err: Error) => log(`lab down: ${err.message}`));
}
