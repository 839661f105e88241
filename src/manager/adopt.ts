import type { Redis } from 'ioredis';
import { abortJob, domainState, jobInfo, resumeDomain } from '../libvirt/virsh.js';
import { sleep } from '../util/exec.js';
import { logger } from '../util/log.js';
import { finish, type HostRoute } from './executor.js';
import { readRunning, type MigrationRecord, type Running } from './history.js';

const log = logger('adopt');

/**
 * Migrations a previous leader started and did not record (it was killed, or
 * stopped for an upgrade): each is marked in Redis before its virsh starts.
 * The new leader watches each one to its end through libvirt, aborts it at
 * the migration timeout, records where the VM ended up, and resumes a VM
 * left paused on its source, so that nothing is left half done or unknown.
 */
export async function adoptRunning(
  redis: Redis,
  routes: Map<string, HostRoute>,
  opts: { timeoutMs: number; cooldownMs: number; manager: string; pollMs?: number; ours?: ReadonlySet<string> },
): Promise<MigrationRecord[]> {
  const out: MigrationRecord[] = [];
  for (const r of await readRunning(redis)) {
    // This manager's own migrations (another decision of it runs them now) are not adopted.
    if (r.manager === opts.manager && opts.ours?.has(r.vm)) continue;
    const src = routes.get(r.from);
    const dst = routes.get(r.to);
    if (!src || !dst) {
      log.error({ ...r }, 'a migration a previous leader started involves a host whose route is not trusted: left for a person (virt-cohort history, virsh domjobinfo)');
      continue;
    }
    log.warn({ ...r }, 'adopting a migration a previous leader started');
    out.push(await watchToEnd(redis, r, src, dst, opts));
  }
  return out;
}

async function watchToEnd(redis: Redis, r: Running, src: HostRoute, dst: HostRoute, opts: { timeoutMs: number; cooldownMs: number; manager: string; pollMs?: number }): Promise<MigrationRecord> {
  let aborted = false;
  for (;;) {
    const job = await jobInfo(src.uri, r.vm).catch(() => ({}) as Record<string, string>);
    const type = job['Job type'] ?? 'None';
    if (type === 'None' || type === '') break;
    if (!aborted && Date.now() - r.at > opts.timeoutMs) {
      aborted = true;
      log.warn({ vm: r.vm, timeoutMs: opts.timeoutMs }, 'adopted migration too slow: aborting; the VM stays on its source');
      await abortJob(src.uri, r.vm).catch((err) => log.error({ err, vm: r.vm }, 'domjobabort failed'));
    }
    await sleep(opts.pollMs ?? 1000);
  }
  const rec: MigrationRecord = {
    vm: r.vm,
    from: r.from,
    to: r.to,
    outcome: 'failed',
    at: r.at,
    seconds: (Date.now() - r.at) / 1000,
    reason: `adopted: started by ${r.manager ?? 'a previous manager'}${r.reason ? ` (${r.reason})` : ''}`,
    manager: opts.manager,
  };
  const there = await domainState(dst.uri, r.vm).catch(() => 'absent');
  if (there === 'running') rec.outcome = 'ok';
  else {
    const here = await domainState(src.uri, r.vm).catch(() => 'absent');
    if (here === 'paused') {
      // A migration cut short can leave the VM paused where it was: it must run.
      await resumeDomain(src.uri, r.vm).then(
        () => log.warn({ vm: r.vm, host: r.from }, 'resumed a VM a cut-short migration left paused'),
        (err) => log.error({ err, vm: r.vm, host: r.from }, 'cannot resume a VM a cut-short migration left paused: resume it by hand (virsh resume)'),
      );
    }
    rec.outcome = aborted ? 'aborted' : 'failed';
    rec.error = `the manager that started it stopped; the VM is ${here === 'paused' ? 'resumed' : here} on ${r.from}${there !== 'absent' ? `, ${there} on ${r.to}` : ''}`;
  }
  await finish(redis, rec, opts, false);
  return rec;
}
