// Network interfaces as the sync daemons need them: does the device exist (the kernel's
// __dev_get_by_name), its MTU (for sync_maxlen) and the address that names it to an IPv4 socket
// (IP_MULTICAST_IF and an IPv4 group membership take an address; IPv6 takes the scope).

import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { addrEquals, addrMask, parseIPv4 } from '../core/inet.js';

export interface NetInterface {
  name: string;
  mtu: number;
  /** The interface's first IPv4 address, or null when it has none or is not running (node lists only those). */
  ipv4: string | null;
  /** Its IPv4 networks, "198.18.1.3/24": where the senders on its link have their addresses. */
  ipv4Networks: readonly string[];
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
  const v4 = (networkInterfaces()[name] ?? []).filter((a) => a.family === 'IPv4');
  return { name, mtu, ipv4: v4[0]?.address ?? null, ipv4Networks: v4.flatMap((a) => a.cidr ?? []) };
};

/**
 * Whether an IPv4 source address lies on one of the interface's networks: a sync datagram from
 * anywhere else did not come from a director on this link (the group is link-local, TTL 1).
 */
export function onLink(iface: NetInterface, source: string): boolean {
  const from = parseIPv4(source);
  if (from === null) return false;
  return iface.ipv4Networks.some((cidr) => {
    const [address, prefix] = cidr.split('/');
    const network = parseIPv4(address ?? '');
    return network !== null && addrEquals(addrMask(from, Number(prefix)), addrMask(network, Number(prefix)));
  });
}

/** A fixed set of interfaces, for tests; without networks of its own, an interface has its address's /24. */
export function fakeInterfaces(
  list: readonly (Omit<NetInterface, 'ipv4Networks'> & { ipv4Networks?: readonly string[] })[],
): InterfaceLookup {
  return (name) => {
    const found = list.find((i) => i.name === name);
    if (!found) return null;
    return {
      ...found,
      ipv4Networks: found.ipv4Networks ? [...found.ipv4Networks] : found.ipv4 ? [`${found.ipv4}/24`] : [],
    };
  };
}
