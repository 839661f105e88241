import { spawn, type ChildProcess } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, waitFor } from '../../src/util/exec.js';

const UDP = join(dirname(fileURLToPath(import.meta.url)), 'udp.js');
const TCP = join(dirname(fileURLToPath(import.meta.url)), 'tcp.js');

/**
 * A VM stand-in: namespace `vm` holds eth0 (the guest's NIC), namespace `host`
 * holds its peer `tap0` (what the sensor watches) with the addresses of the
 * VM's peers. Neighbours are static so the counts hold no ARP or ND surprises.
 */
export class TapPair {
  readonly host: string;
  readonly vm: string;
  readonly vmIp = '10.77.0.100';
  readonly vmIp6 = 'fd00:77::100';
  readonly peers = ['10.77.0.1', '10.77.0.2', '10.77.0.3'];
  readonly peer6 = 'fd00:77::1';
  private children: ChildProcess[] = [];

  constructor(readonly id: string) {
    this.host = `vcs-${id}-h`;
    this.vm = `vcs-${id}-v`;
  }

  async create(): Promise<void> {
    for (const ns of [this.host, this.vm]) {
      await run('ip', ['netns', 'add', ns]);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    await this.createTap();
  }

  /** (Re)creates the tap and its peer, as QEMU does when a VM starts or arrives. */
  async createTap(): Promise<void> {
    await run('ip', ['-n', this.host, 'link', 'add', 'tap0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.vm]);
    for (const p of this.peers) await run('ip', ['-n', this.host, 'addr', 'add', `${p}/24`, 'dev', 'tap0']);
    await run('ip', ['-n', this.host, 'addr', 'add', `${this.peer6}/64`, 'dev', 'tap0', 'nodad']);
    await run('ip', ['-n', this.vm, 'addr', 'add', `${this.vmIp}/24`, 'dev', 'eth0']);
    await run('ip', ['-n', this.vm, 'addr', 'add', `${this.vmIp6}/64`, 'dev', 'eth0', 'nodad']);
    await run('ip', ['-n', this.host, 'link', 'set', 'tap0', 'up']);
    await run('ip', ['-n', this.vm, 'link', 'set', 'eth0', 'up']);
    const mac = async (ns: string, dev: string) => (JSON.parse(await run('ip', ['-j', '-n', ns, 'link', 'show', dev])) as { address: string }[])[0]!.address;
    const hostMac = await mac(this.host, 'tap0');
    const vmMac = await mac(this.vm, 'eth0');
    for (const p of this.peers) await run('ip', ['-n', this.vm, 'neigh', 'replace', p, 'lladdr', hostMac, 'dev', 'eth0', 'nud', 'permanent']);
    await run('ip', ['-n', this.vm, 'neigh', 'replace', this.peer6, 'lladdr', hostMac, 'dev', 'eth0', 'nud', 'permanent']);
    await run('ip', ['-n', this.host, 'neigh', 'replace', this.vmIp, 'lladdr', vmMac, 'dev', 'tap0', 'nud', 'permanent']);
    await run('ip', ['-n', this.host, 'neigh', 'replace', this.vmIp6, 'lladdr', vmMac, 'dev', 'tap0', 'nud', 'permanent']);
    // Many distinct peers (the full-map test) are reached through the host side.
    await run('ip', ['-n', this.vm, 'route', 'add', '10.128.0.0/9', 'via', this.peers[0]!]);
  }

  async deleteTap(): Promise<void> {
    await run('ip', ['-n', this.host, 'link', 'del', 'tap0']);
  }

  /** Sends `count` datagrams of `size` bytes to each address, from inside a namespace. */
  async send(ns: string, to: string[], count: number, size: number, intervalMs = 0, port = 9999): Promise<void> {
    await run(
      'nsenter',
      [
        `--net=/run/netns/${ns}`,
        '--',
        process.execPath,
        UDP,
        'send',
        '--to',
        to.join(','),
        '--port',
        String(port),
        '--count',
        String(count),
        '--size',
        String(size),
        '--interval-ms',
        String(intervalMs),
      ],
      { timeoutMs: 120_000 },
    );
  }

  /** The MAC address of the VM's NIC (eth0 in the vm namespace). */
  async vmMac(): Promise<string> {
    return (JSON.parse(await run('ip', ['-j', '-n', this.vm, 'link', 'show', 'eth0'])) as { address: string }[])[0]!.address;
  }

  /** Streams `bytes` over one TCP connection from a namespace (GSO makes 64 KiB super-packets on veth). */
  async tcpSend(ns: string, to: string, bytes: number, port = 9998): Promise<void> {
    await run('nsenter', [`--net=/run/netns/${ns}`, '--', process.execPath, TCP, 'send', '--to', to, '--port', String(port), '--bytes', String(bytes)], { timeoutMs: 120_000 });
  }

  async tcpSink(ns: string, port = 9998): Promise<void> {
    await this.start([process.execPath, TCP, 'sink', '--port', String(port)], ns);
  }

  /** A TCP counter of the namespace's stack from /proc/net/snmp (InSegs counts gso_segs of what arrives). */
  async tcpStat(ns: string, name: 'InSegs' | 'OutSegs' | 'RetransSegs'): Promise<number> {
    const snmp = await run('cat', ['/proc/net/snmp'], { netns: ns });
    const [names, values] = snmp
      .split('\n')
      .filter((l) => l.startsWith('Tcp:'))
      .map((l) => l.split(/\s+/));
    return Number(values![names!.indexOf(name)]);
  }

  /** The VM streams `bytes` to the host side's first address; resolves once the connection is closed on both sides. */
  async sendTcpAndWait(bytes: number): Promise<void> {
    await this.tcpSend(this.vm, this.peers[0]!, bytes);
    // The sender exits on its FIN's answer; its last ACK may still be on the way to the sink.
    await waitFor('the TCP connection to close on both sides', async () => ((await this.tcpOpen(this.vm)) || (await this.tcpOpen(this.host)) ? undefined : true), 10_000, 10);
  }

  /** A TCP connection of the namespace is still exchanging segments (any state but LISTEN and TIME-WAIT, whose last ACK is sent). */
  private async tcpOpen(ns: string): Promise<boolean> {
    return (await run('ss', ['-Htan', 'exclude', 'listening', 'exclude', 'time-wait'], { netns: ns })).trim() !== '';
  }

  /** A UDP sink in a namespace, so no datagram draws an ICMP error that would be counted too. */
  async sink(ns: string, port = 9999): Promise<void> {
    await this.start([process.execPath, UDP, 'sink', '--port', String(port)], ns);
  }

  /** Starts a helper in a namespace and waits for its first line ("ready"). */
  private async start(argv: string[], ns: string): Promise<void> {
    const child = spawn('nsenter', [`--net=/run/netns/${ns}`, '--', ...argv], { stdio: ['ignore', 'pipe', 'inherit'] });
    this.children.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`${argv.join(' ')} exited with ${code}`)));
    });
  }

  async destroy(): Promise<void> {
    for (const c of this.children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const ns of [this.host, this.vm]) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  }
}
