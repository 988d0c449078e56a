// rtnetlink's codec: the requests lvsd sends, and the neighbour and route messages it reads,
// built here byte by byte as the kernel sends them.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseAddr } from '../../src/core/inet.js';
import {
  encodeLinkDump,
  encodeNeighbourDump,
  encodeResolve,
  encodeRouteGet,
  parseLink,
  parseNeighbour,
  parseRoute,
  RTM_DELLINK,
  RTM_DELNEIGH,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  splitMessages,
} from '../../src/dataplane/netlink.js';

function attr(type: number, value: number[]): number[] {
  const len = 4 + value.length;
  const out = [len & 0xff, len >> 8, type & 0xff, type >> 8, ...value];
  while (out.length % 4) out.push(0);
  return out;
}

function nlmsg(type: number, body: number[], seq = 0): Buffer {
  const len = 16 + body.length;
  const header = Buffer.alloc(16);
  header.writeUInt32LE(len, 0);
  header.writeUInt16LE(type, 4);
  header.writeUInt32LE(seq, 8);
  return Buffer.concat([header, Buffer.from(body)]);
}

function neigh(
  type: number,
  family: number,
  ifindex: number,
  state: number,
  dst: number[],
  mac?: number[],
): Buffer {
  const body = [family, 0, 0, 0, ifindex, 0, 0, 0, state & 0xff, state >> 8, 0, 1];
  return nlmsg(type, [...body, ...attr(1, dst), ...(mac ? attr(2, mac) : [])]);
}

const MAC = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

describe('rtnetlink messages', () => {
  it('reads a resolved IPv4 neighbour, a STALE IPv6 one, and an incomplete one as no MAC', () => {
    const [reachable] = splitMessages(neigh(RTM_NEWNEIGH, 2, 3, 0x02, [198, 18, 1, 11], MAC));
    assert.deepEqual(parseNeighbour(reachable!), {
      ifindex: 3,
      addr: parseAddr('198.18.1.11'),
      mac: Uint8Array.from(MAC),
    });
    const v6 = [0x20, 0x01, 0x0d, 0xb8, ...new Array<number>(11).fill(0), 0x11];
    const [stale] = splitMessages(neigh(RTM_NEWNEIGH, 10, 4, 0x04, v6, MAC));
    assert.deepEqual(parseNeighbour(stale!)?.addr, parseAddr('2001:db8::11'));
    assert.ok(parseNeighbour(stale!)?.mac);
    const [incomplete] = splitMessages(neigh(RTM_NEWNEIGH, 2, 3, 0x01, [198, 18, 1, 12]));
    assert.equal(parseNeighbour(incomplete!)?.mac, null);
    const [gone] = splitMessages(neigh(RTM_DELNEIGH, 2, 3, 0x02, [198, 18, 1, 11], MAC));
    assert.equal(parseNeighbour(gone!)?.mac, null);
  });

  it('ignores what is no IP neighbour (a bridge fdb entry) and reads several messages a datagram', () => {
    const [fdb] = splitMessages(neigh(RTM_NEWNEIGH, 7, 3, 0x80, MAC, MAC));
    assert.equal(parseNeighbour(fdb!), null);
    const two = Buffer.concat([
      neigh(RTM_NEWNEIGH, 2, 3, 0x02, [198, 18, 1, 11], MAC),
      neigh(RTM_NEWNEIGH, 2, 3, 0x02, [198, 18, 1, 12], MAC),
    ]);
    assert.equal(splitMessages(two).map(parseNeighbour).filter(Boolean).length, 2);
  });

  it('reads a route answer: local, or out of an interface through a gateway', () => {
    const route = (type: number, attrs: number[]) =>
      splitMessages(nlmsg(RTM_NEWROUTE, [2, 32, 0, 0, 254, 0, 0, type, 0, 0, 0, 0, ...attrs]))[0]!;
    assert.deepEqual(parseRoute(route(2, attr(4, [1, 0, 0, 0]))), { type: 2, ifindex: 1, gateway: null });
    assert.deepEqual(parseRoute(route(1, [...attr(4, [5, 0, 0, 0]), ...attr(5, [198, 18, 0, 254])])), {
      type: 1,
      ifindex: 5,
      gateway: parseAddr('198.18.0.254'),
    });
  });

  it("reads an interface's MTU, and one that went away", () => {
    // ifinfomsg: family, pad, type (ARPHRD_ETHER), index 5, flags, change; then IFLA_IFNAME, IFLA_MTU.
    const ifinfo = [0, 0, 1, 0, 5, 0, 0, 0, 0x43, 0x10, 0, 0, 0, 0, 0, 0];
    const name = attr(3, [...Buffer.from('pub0\0')]);
    const [link] = splitMessages(nlmsg(RTM_NEWLINK, [...ifinfo, ...name, ...attr(4, [0x00, 0x05, 0, 0])]));
    assert.deepEqual(parseLink(link!), { ifindex: 5, mtu: 1280 });
    const [gone] = splitMessages(nlmsg(RTM_DELLINK, ifinfo));
    assert.deepEqual(parseLink(gone!), { ifindex: 5, mtu: null });
    const [noMtu] = splitMessages(nlmsg(RTM_NEWLINK, [...ifinfo, ...name]));
    assert.equal(parseLink(noMtu!), null);
  });

  it('encodes its requests with lengths and sequence numbers the kernel checks', () => {
    for (const request of [
      encodeNeighbourDump(7),
      encodeLinkDump(10),
      encodeResolve(8, 3, parseAddr('198.18.1.11')!),
      encodeRouteGet(9, parseAddr('2001:db8::1')!),
    ]) {
      assert.equal(request.readUInt32LE(0), request.length);
      assert.equal(request.length % 4, 0);
    }
    const resolve = encodeResolve(8, 3, parseAddr('198.18.1.11')!);
    assert.equal(resolve.readUInt32LE(8), 8);
    assert.equal(resolve.readUInt8(16 + 10), 1, 'NTF_USE');
    assert.deepEqual([...resolve.subarray(16 + 12 + 4, 16 + 12 + 8)], [198, 18, 1, 11]);
  });

  it('never throws on garbage', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        for (const msg of splitMessages(Buffer.from(bytes))) {
          parseNeighbour(msg);
          parseLink(msg);
          parseRoute(msg);
        }
      }),
    );
  });
});
