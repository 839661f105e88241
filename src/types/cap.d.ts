// The parts of npm `cap` (libpcap binding, no bundled types) that the pcap sensor uses.
declare module 'cap' {
  import { EventEmitter } from 'node:events';
  export class Cap extends EventEmitter {
    open(device: string, filter: string, bufSize: number, buffer: Buffer): string;
    setMinBytes?(bytes: number): void;
    close(): void;
    on(event: 'packet', listener: (nbytes: number, truncated: boolean) => void): this;
    static deviceList(): { name: string }[];
  }
  const cap: { Cap: typeof Cap };
  export default cap;
}
