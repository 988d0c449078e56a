// Network interfaces as the sync daemons need them: does the device exist (the kernel's
// __dev_get_by_name), its MTU (for sync_maxlen) and the address that names it to an IPv4 socket
// (IP_MULTICAST_IF and an IPv4 group membership take an address; IPv6 takes the scope).

import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';

export interface NetInterface {
  name: string;
  mtu: number;
  /** The interface's first IPv4 address, or null when it has none or is not running (node lists only those). */
  ipv4: string | null;
}

/** Looks an interface up by name; null when there is no such device. */
export type InterfaceLookup = (name: string) => NetInterface | null;

/** Linux interface names: up to 15 bytes, no '/', ':' or whitespace (dev_valid_name). */
function validName(name: string): boolean {
  return name.length > 0 && name.length <= 15 && name !== '.' && name !== '..' && !/[/\s:]/.test(name);
}

/** The host's interfaces, read from /sys/class/net and the kernel's address list. */
export const systemInterfaces: InterfaceLookup = (name) => {
  if (!validName(name)) return null;
  let mtu: number;
  try {
    mtu = Number(readFileSync(`/sys/class/net/${name}/mtu`, 'utf8').trim());
  } catch {
    return null;
  }
  const v4 = (networkInterfaces()[name] ?? []).find((a) => a.family === 'IPv4');
  return { name, mtu, ipv4: v4?.address ?? null };
};

/** A fixed set of interfaces, for tests. */
export function fakeInterfaces(list: readonly NetInterface[]): InterfaceLookup {
  return (name) => list.find((i) => i.name === name) ?? null;
}
