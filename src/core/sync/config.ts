// What the kernel derives from a sync daemon's settings when it starts one (start_sync_thread):
// the message size limit from the interface MTU and the group's family.

import type { Addr, Family } from '../inet.js';
import type { SyncState } from '../ops.js';

/** IP + UDP header bytes in front of a sync message. */
export function syncHeaderOverhead(groupFamily: Family): number {
  return groupFamily === 6 ? 40 + 8 : 20 + 8;
}

/**
 * sync_maxlen as start_sync_thread settles it: a given value clamped to [1, 65535 - headers]
 * (a backup needs at least 1024); 0 means the default, 1500 - headers for a master (whatever the
 * MTU: messages stay unfragmented on any path) and the interface MTU clamped to 1500..65535 minus
 * headers for a backup (so it can take a master's larger messages).
 */
export function resolveSyncMaxLen(
  state: SyncState,
  requested: number,
  mtu: number,
  groupFamily: Family,
): number {
  const hlen = syncHeaderOverhead(groupFamily);
  if (requested > 0) return Math.min(Math.max(requested, state === 'backup' ? 1024 : 1), 65535 - hlen);
  const base = state === 'backup' ? Math.min(Math.max(mtu, 1500), 65535) : 1500;
  return base - hlen;
}

/** 224.0.0.0/4 or ff00::/8: what a sync group must be (ipvsadm's IN_MULTICAST / IN6_IS_ADDR_MULTICAST). */
export function isMulticastAddr(addr: Addr): boolean {
  return addr.af === 4 ? addr.a >>> 28 === 0xe : addr.a >>> 24 === 0xff;
}
