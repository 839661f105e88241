import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { binDir } from '../paths.js';
import { run, waitFor } from '../util/exec.js';
import { livePid } from '../util/process.js';
import { labDir } from './state.js';
import { wanNetns, type LabSettings } from './topology.js';

/**
 * The inter-site delay. This kernel has no netem, so every packet the wan
 * router forwards (and only those: traffic inside a site is bridged, never
 * routed) goes through NFQUEUE to a small delay line that accepts it
 * `delayMs` later. Without the delay line the queue drops packets instead of
 * passing them undelayed, so a lab with a broken WAN is visibly broken.
 */
const QUEUE = '0';

export const delayPidFile = (name: string) => join(labDir(name), 'wandelay.pid');

export async function startDelayLine(lab: LabSettings): Promise<void> {
  if (lab.delayMs === 0) return;
  const ns = wanNetns(lab);
  const logFd = openSync(join(labDir(lab.name), 'wandelay.log'), 'a');
  const child = spawn('nsenter', [`--net=/run/netns/${ns}`, '--', join(binDir, 'vc-wandelay'), '--queue', QUEUE, '--delay-ms', String(lab.delayMs), '--pidfile', delayPidFile(lab.name)], {
    detached: true,
    stdio: ['ignore', logFd, logFd],
  });
  child.unref();
  closeSync(logFd);
  await waitFor(`the WAN delay line (see ${join(labDir(lab.name), 'wandelay.log')})`, async () => ((await livePid(delayPidFile(lab.name))) ? true : undefined), 10_000, 50);
  await run('iptables', ['-w', '-A', 'FORWARD', '-j', 'NFQUEUE', '--queue-num', QUEUE], { netns: ns });
}

export async function delayLineRunning(lab: LabSettings): Promise<boolean> {
  return lab.delayMs === 0 || (await livePid(delayPidFile(lab.name))) !== undefined;
}
