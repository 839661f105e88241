import { InvalidArgumentError, Option } from 'commander';
import { SENSOR_BACKENDS } from '../sensor/index.js';

/** Commander parsers that reject what is not a number, naming the value. */
export function integer(value: string): number {
  if (!/^-?\d+$/.test(value)) throw new InvalidArgumentError(`'${value}' is not an integer.`);
  return Number(value);
}

export function number(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`'${value}' is not a number.`);
  return n;
}

export const defaultLab = () => process.env.VIRT_COHORT_LAB ?? 'lab';

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** --sensor for the lab's agents: eBPF unless asked, so a missing prerequisite fails loudly instead of falling back. */
export const labSensorOption = () =>
  new Option('--sensor <kind>', "sensor backend of the lab's agents: ebpf fails with the fix when eBPF cannot count here; " + 'auto falls back to libpcap; pcap always uses libpcap')
    .choices(SENSOR_BACKENDS)
    .default('ebpf');
