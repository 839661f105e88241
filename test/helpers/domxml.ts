/** Domain XML documents that the agent's reader (src/libvirt/domxml.ts) and the hook's copy must read alike. */

export const UUID = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';

/** A NIC in <devices>, and a look-alike <interface> in default-namespace metadata that must not count. */
export const WITH_METADATA_NIC = `<domain type='qemu'><name>vm1</name><uuid>${UUID}</uuid>
<metadata><app xmlns="http://tenant.example/1"><interface type='bridge'><mac address='52:54:00:ee:ee:ee'/><target dev='eth0'/>
<ip address='10.66.0.1'/></interface></app>
<vc:policy xmlns:vc="http://virt-cohort.org/xmlns/libvirt/1" move="never"/></metadata>
<devices><!-- <interface><mac address='52:54:00:dd:dd:dd'/></interface> -->
<interface type='bridge'><mac address='52:54:00:65:00:01'/><source bridge='vmbr'/><target dev='vnet7'/><ip address='10.1.200.1' prefix='24'/></interface>
</devices></domain>`;

/**
 * `n` empty <interface/> elements in metadata and no NIC: the old regular
 * expression (`<interface\b[\s\S]*?<\/interface>`) scanned to the end from each
 * of them, time quadratic in n (4,000 took 70 ms, ~4x per doubling).
 */
export function manyElements(n: number): string {
  return `<domain type='qemu'><name>vm1</name><uuid>${UUID}</uuid><metadata><m xmlns="http://tenant.example/1">${'<interface/>'.repeat(n)}` + '</m></metadata><devices><disk/></devices></domain>';
}
