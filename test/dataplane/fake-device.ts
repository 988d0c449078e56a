// In-memory packet devices: the real packet loop runs over them without root. A driver can be
// told to fail opening a name, as the kernel does when a device cannot be created.

import type { DeviceDriver, PacketDevice } from '../../src/dataplane/device.js';

export class FakeDevice implements PacketDevice {
  /** Frames waiting to be read, oldest first. */
  readonly inbox: Uint8Array[] = [];
  /** Frames the loop wrote, oldest first. */
  readonly outbox: Uint8Array[] = [];
  closed = false;
  /** What the kernel would have dropped for want of reading: a test sets it. */
  dropped = 0;

  constructor(
    readonly name: string,
    readonly fwmark: number,
  ) {}

  read(buf: Uint8Array): number {
    const frame = this.inbox.shift();
    if (!frame) return 0;
    buf.set(frame);
    return frame.length;
  }

  write(buf: Uint8Array, length: number): boolean {
    this.outbox.push(buf.slice(0, length));
    return true;
  }

  queueDrops(): number {
    return this.dropped;
  }

  close(): void {
    this.closed = true;
  }
}

export class FakeDriver implements DeviceDriver {
  readonly opened = new Map<string, FakeDevice>();
  readonly refuse = new Set<string>();
  /** How often the loop slept in poll(), and how often it gave the core away instead. */
  waits = 0;
  yields = 0;

  open(name: string, fwmark: number): FakeDevice {
    if (this.refuse.has(name)) throw new Error(`TUNSETIFF ${name}: Device or resource busy`);
    const device = new FakeDevice(name, fwmark);
    this.opened.set(name, device);
    return device;
  }

  wait(): boolean {
    this.waits++;
    return true;
  }

  yieldCpu(): void {
    this.yields++;
  }
}
