import { hostname } from 'node:os';

/** Everything the agent reads from its configuration, validated once and frozen. */
export interface AgentConfig {
  /** Name of this physical host in the registry (default: the machine's hostname). */
  host: string;
  /** Site (cloud, grid, rack) the host belongs to. Default "default". */
  site: string;
  /** libvirt URI of the local hypervisor. Default qemu:///system. */
  libvirtUri: string;
  /** Redis of the collector, without credentials (they are in redisAuth, so that this can be logged). Default redis://127.0.0.1:6379. */
  redis: string;
  /** Period length in seconds; divides an hour. Default 30 (the seed's). */
  periodSeconds: number;
  /** Seconds between reconciles with libvirt (and heartbeats in the host registry). Default 10. */
  reconcileSeconds: number;
  /** Unix socket the libvirt hook writes to (root only). Default /run/virt-cohort/agent.sock. */
  socket: string;
  /** Where reports wait while Redis is unreachable, and the VM id table. Default /var/lib/virt-cohort. */
  stateDir: string;
  /** Most reports kept on disk while Redis is down; the oldest are dropped beyond (loudly). Default 2880 (a day of 30 s periods). */
  spoolMax: number;
  /** Periods kept in Redis; 0 keeps all (the seed's default). */
  retention: number;
  /** Sensor backend: auto (eBPF, else libpcap), ebpf, pcap. Default auto. */
  sensor: 'auto' | 'ebpf' | 'pcap';
  /** Where the eBPF sensor pins its maps. Default /sys/fs/bpf/virt-cohort. */
  pinRoot: string;
  /** Where migrations into this host send memory (e.g. tcp://10.0.1.5), when not the libvirt URI's host. Default: none. */
  migrateUri: string;
  /** Prometheus endpoint port; 0 (the default) serves none. */
  metricsPort: number;
  /** Address the metrics endpoint binds. Default 127.0.0.1. */
  metricsBind: string;
  /** Credentials and TLS for `redis` (src/config/redis.ts); none by default. */
  redisAuth?: RedisAuth;
}

/** How to authenticate to Redis and whether to use TLS; file settings are read when connecting. */
export interface RedisAuth {
  username?: string;
  password?: string;
  passwordFile?: string;
  tls?: { ca?: string; cert?: string; key?: string; servername?: string };
}

export const DEFAULTS: AgentConfig = Object.freeze({
  host: hostname(),
  site: 'default',
  libvirtUri: 'qemu:///system',
  redis: 'redis://127.0.0.1:6379',
  periodSeconds: 30,
  reconcileSeconds: 10,
  socket: '/run/virt-cohort/agent.sock',
  stateDir: '/var/lib/virt-cohort',
  spoolMax: 2880,
  retention: 0,
  sensor: 'auto',
  pinRoot: '/sys/fs/bpf/virt-cohort',
  migrateUri: '',
  metricsPort: 0,
  metricsBind: '127.0.0.1',
});
