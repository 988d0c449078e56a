// The packet loop's port to the devices it reads and writes: TUN devices today (tun.ts), an
// in-memory fake in the tests; the layer-2 data plane adds AF_PACKET rings behind the same port.

export interface PacketDevice {
  readonly name: string;
  /**
   * The firewall mark of every packet this device delivers, 0 for none. The kernel hands a TUN
   * device a packet without its mark, so each fwmark service gets a device of its own.
   */
  readonly fwmark: number;
  /** One frame (offload header first) into `buf`; 0 when none is queued. Throws when the device fails. */
  read(buf: Uint8Array): number;
  /** Writes buf[0..length) as one frame; false when the kernel refused it. */
  write(buf: Uint8Array, length: number): boolean;
  /**
   * Frames the kernel dropped since the device was opened because lvsd did not read them in time
   * (its queue was full): losses no read or write of lvsd's ever sees.
   */
  queueDrops(): number;
  close(): void;
}

/** Opens devices and waits for traffic on them. */
export interface DeviceDriver {
  open(name: string, fwmark: number): PacketDevice;
  /**
   * Blocks until one of `devices` (or of `moreFds`: the layer-2 plane's sockets) has a frame or
   * `timeoutMs` passes (with nothing to wait on: sleeps). Whether one of `devices` has a frame
   * now (true when the driver cannot tell).
   */
  wait(devices: readonly PacketDevice[], timeoutMs: number, moreFds?: readonly number[]): boolean;
  /** Lets any other thread that is ready run on this core for a moment (sched_yield), without sleeping. */
  yieldCpu(): void;
}

/** The device of the fwmark service with this mark (IFNAMSIZ allows "lvsf" and ten digits). */
export function fwmarkDeviceName(mark: number): string {
  return `lvsf${mark}`;
}
