/**
 * The sensor backends the lab tests run with: both by default, so that the
 * libpcap fallback is proven by the same tests as eBPF. VIRT_COHORT_TEST_SENSORS
 * (e.g. `pcap`) narrows it for a quick run of one backend.
 */
export function labSensors(): ('ebpf' | 'pcap')[] {
  const asked = (process.env.VIRT_COHORT_TEST_SENSORS ?? 'ebpf,pcap')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of asked) if (s !== 'ebpf' && s !== 'pcap') throw new Error(`VIRT_COHORT_TEST_SENSORS: '${s}' is not ebpf or pcap`);
  return asked as ('ebpf' | 'pcap')[];
}
