import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout (or installed package) root: this file is compiled to dist/src/paths.js. */
export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const guestDir = join(packageRoot, 'dist', 'guest');
/** Small C helpers built at set-up (the lab's WAN delay line). */
export const binDir = join(packageRoot, 'dist', 'bin');
/** The sensor's compiled BPF object (built by `make -C bpf` at set-up). */
export const bpfObject = join(packageRoot, 'dist', 'bpf', 'counter.bpf.o');
/** The fallback sensor's libpcap reader, a Node-API addon (built by `make -C src/sensor/native` at set-up). */
export const pcapAddon = join(packageRoot, 'dist', 'native', 'vc_pcap.node');
