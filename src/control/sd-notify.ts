// systemd's readiness protocol (sd_notify(3)): one AF_UNIX datagram of KEY=VALUE lines to the
// socket named in $NOTIFY_SOCKET. Node's dgram has no AF_UNIX, so the socket is made with koffi,
// the project's way to syscalls (no native addon). Spawning `systemd-notify --ready` instead would
// make the sender a child, not the main pid: it needs NotifyAccess=all and races (its man page).

import koffi from 'koffi';

/** What lvsd tells its service manager; a no-op when none listens. */
export interface ServiceNotifier {
  /** Sends the fields as one message; never throws (a lost notification is logged by the caller's choice). */
  notify(fields: Readonly<Record<string, string>>): void;
  close(): void;
}

export const NO_NOTIFIER: ServiceNotifier = { notify: () => undefined, close: () => undefined };

/** The datagram's text: KEY=VALUE lines; a value may not hold a newline (it would start a new key). */
export function notifyMessage(fields: Readonly<Record<string, string>>): string {
  return Object.entries(fields)
    .map(([key, value]) => `${key}=${value.replace(/\n/g, ' ')}\n`)
    .join('');
}

/** RELOADING=1 with the time it began, CLOCK_MONOTONIC in µs, as systemd (253+) reads it. */
export function reloadingFields(monotonicNs: bigint): Record<string, string> {
  return { RELOADING: '1', MONOTONIC_USEC: String(monotonicNs / 1000n) };
}

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
const SUN_PATH_MAX = 108;

/** sockaddr_un for $NOTIFY_SOCKET: a path, or (leading '@') a name in the abstract namespace. */
export function notifySockaddr(name: string): Buffer | null {
  const abstract = name.startsWith('@');
  const path = Buffer.from(abstract ? name.slice(1) : name);
  if (path.length === 0 || path.length >= SUN_PATH_MAX || (!abstract && !name.startsWith('/'))) return null;
  // The abstract name's length is the address length; a path ends with a NUL.
  const addr = Buffer.alloc(2 + (abstract ? 1 : 0) + path.length + (abstract ? 0 : 1));
  addr.writeUInt16LE(AF_UNIX, 0);
  path.copy(addr, abstract ? 3 : 2);
  return addr;
}

const libc = koffi.load('libc.so.6');
const c = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  sendto: libc.func(
    'long sendto(int fd, const void *buf, unsigned long len, int flags, const void *addr, uint32_t alen)',
  ),
  close: libc.func('int close(int fd)'),
};

/**
 * The notifier for $NOTIFY_SOCKET (NO_NOTIFIER when unset); `onError` hears of a socket that
 * cannot be made or a datagram systemd did not take.
 */
export function systemdNotifier(
  env: NodeJS.ProcessEnv,
  onError: (message: string) => void = () => undefined,
): ServiceNotifier {
  const name = env.NOTIFY_SOCKET;
  if (!name) return NO_NOTIFIER;
  const addr = notifySockaddr(name);
  if (!addr) {
    onError(`NOTIFY_SOCKET ${JSON.stringify(name)} is not a socket path or abstract name`);
    return NO_NOTIFIER;
  }
  const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) {
    onError(`cannot make a socket for NOTIFY_SOCKET (errno ${koffi.errno()})`);
    return NO_NOTIFIER;
  }
  let open = true;
  return {
    notify(fields) {
      if (!open) return;
      const message = Buffer.from(notifyMessage(fields));
      if ((c.sendto(fd, message, message.length, MSG_NOSIGNAL, addr, addr.length) as number) < 0) {
        onError(`cannot notify ${name} (errno ${koffi.errno()})`);
      }
    },
    close() {
      if (open) c.close(fd);
      open = false;
    },
  };
}
