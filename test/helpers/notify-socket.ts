// A fake $NOTIFY_SOCKET for the tests: an AF_UNIX datagram socket bound here (koffi, as node has
// none), read without blocking, one message per datagram as systemd's manager receives them.

import koffi from 'koffi';
import { notifySockaddr } from '../../src/control/sd-notify.js';

const libc = koffi.load('libc.so.6');
const c = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  bind: libc.func('int bind(int fd, const void *addr, uint32_t len)'),
  recv: libc.func('long recv(int fd, _Out_ void *buf, unsigned long len, int flags)'),
  close: libc.func('int close(int fd)'),
};
const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class FakeNotifySocket {
  /** Every datagram received so far, as text. */
  readonly messages: string[] = [];
  private readonly fd: number;

  /** `name`: a path, or '@name' for the abstract namespace (the value for $NOTIFY_SOCKET). */
  constructor(readonly name: string) {
    const addr = notifySockaddr(name);
    if (!addr) throw new Error(`bad notify socket name ${name}`);
    this.fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number;
    if (this.fd < 0 || (c.bind(this.fd, addr, addr.length) as number) < 0) {
      throw new Error(`cannot bind ${name}: errno ${koffi.errno()}`);
    }
  }

  /** Takes what has arrived. */
  drain(): string[] {
    const buf = Buffer.alloc(4096);
    for (;;) {
      const n = c.recv(this.fd, buf, buf.length, MSG_DONTWAIT) as number;
      if (n < 0) return this.messages;
      this.messages.push(buf.subarray(0, n).toString());
    }
  }

  /** Resolves once a message matches; rejects after `timeoutMs` with what came. */
  async waitFor(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    for (const end = Date.now() + timeoutMs; Date.now() < end; await sleep(20)) {
      const found = this.drain().find((m) => pattern.test(m));
      if (found !== undefined) return found;
    }
    throw new Error(`no notification matching ${pattern}; got ${JSON.stringify(this.messages)}`);
  }

  close(): void {
    c.close(this.fd);
  }
}
