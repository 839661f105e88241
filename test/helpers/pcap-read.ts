// Runs a sensor inside a network namespace (libpcap captures where it runs):
//   nsenter --net=/run/netns/NS node pcap-read.js --tap tap0 --vm 1 --mac MAC --seconds N
//     [--backend pcap|auto] [--object FILE] [--pin-root DIR]
// Prints "ready <backend>" once counting, then after N seconds one JSON line: the reading.
import { parseArgs } from 'node:util';
import { openSensor } from '../../src/sensor/index.js';

const { values } = parseArgs({
  options: {
    tap: { type: 'string' },
    vm: { type: 'string' },
    mac: { type: 'string' },
    seconds: { type: 'string' },
    backend: { type: 'string' },
    object: { type: 'string' },
    'pin-root': { type: 'string' },
  },
});
const sensor = await openSensor({
  backend: (values.backend ?? 'pcap') as 'pcap' | 'auto',
  object: values.object ?? '/nonexistent',
  pinRoot: values['pin-root'] ?? '/sys/fs/bpf/vc-pcap-read-unused',
});
await sensor.attach(values.tap!, Number(values.vm), values.mac);
await sensor.read();
process.stdout.write(`ready ${sensor.kind}\n`);
await new Promise((r) => setTimeout(r, Number(values.seconds ?? 3) * 1000));
process.stdout.write(`${JSON.stringify(await sensor.read())}\n`);
await sensor.close();
process.exit(0);
