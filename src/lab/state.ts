import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SensorBackend } from '../sensor/index.js';
import type { Workload } from './debian.js';
import type { LabSettings } from './topology.js';

/**
 * What `lab up` created, written before it creates anything so that `lab down`
 * can undo a crashed `lab up`. Lives under /run: like the namespaces it
 * describes, it does not survive a reboot.
 */
export interface LabState extends LabSettings {
  status: 'creating' | 'up';
  createdAt: string;
  /** Seconds `lab up` took, measured. */
  upSeconds?: number;
  /** Period of the lab's agents, seconds. */
  periodSeconds: number;
  /** Sensor backend the lab's agents were started with (absent in labs made before it was recorded: ebpf). */
  sensor?: SensorBackend;
  vms: Record<string, VmSpec>;
}

export interface VmSpec {
  name: string;
  index: number;
  ip: string;
  mac: string;
  memoryMiB: number;
  /** Pattern as given (e.g. groups:2) and the peer VM indexes it resolved to. */
  pattern: string;
  cluster: number;
  peers: number[];
  rate: number;
  size: number;
  /** ARP announcements the guest sends, for the address-book tests (src/lab/guest/vcarp.c). */
  arp?: string;
  /** 'debian': a disk-backed Debian guest (src/lab/debian.ts); absent: the diskless traffic generator. */
  image?: 'debian';
  /** What a Debian guest runs once up (an MPI job it launches). */
  workload?: Workload;
  /** 'local': a Debian guest's root disk is its host's own, copied by each migration; absent: on the lab's shared storage. */
  disk?: 'local';
  /** 'off': a Debian guest turns segmentation offload off, so its interface counts wire frames as the sensor does. */
  offload?: 'off';
  /** What it is in another VM's job (an MPI rank, a tier), for people. */
  role?: string;
}

export const runDir = () => process.env.VIRT_COHORT_RUN_DIR ?? '/run/virt-cohort';
export const labsDir = () => join(runDir(), 'labs');
export const labDir = (name: string) => join(labsDir(), name);
export const hostDir = (name: string, host: string) => join(labDir(name), 'hosts', host);
export const consoleLog = (name: string, vm: string) => join(labDir(name), 'vms', `${vm}.console.log`);

export async function readState(name: string): Promise<LabState | undefined> {
  try {
    return JSON.parse(await readFile(join(labDir(name), 'state.json'), 'utf8')) as LabState;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Written to a temporary file then renamed, so a crash never leaves half a state file. */
export async function writeState(state: LabState): Promise<void> {
  const dir = labDir(state.name);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, 'state.json.tmp');
  await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`);
  await rename(tmp, join(dir, 'state.json'));
}

export async function listLabs(): Promise<LabState[]> {
  let names: string[];
  try {
    names = await readdir(labsDir());
  } catch {
    return [];
  }
  const states = await Promise.all(names.map((n) => readState(n)));
  return states.filter((s): s is LabState => s !== undefined);
}
