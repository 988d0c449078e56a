// One suite every registered forwarding method must pass, whatever it does to a packet (the
// scheduler conformance model): it is found by its name and id; a client's packet comes out
// addressed to the real server, still a valid packet, within the room the method claims; it
// never throws on any packet; the link delivers it to its IP destination unless the method says
// it goes to the real server itself; and a method whose replies bypass the director moves TCP
// through the INPUT_ONLY table.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import '../../../src/core/forward/index.js';
import {
  forwardingMethodById,
  forwardingMethodId,
  forwardingMethodNames,
} from '../../../src/core/forward/registry.js';
import type { ForwardingMethod, XmitTarget } from '../../../src/core/forward/types.js';
import { parsePacket, type ParsedPacket } from '../../../src/core/packet/parse.js';
import { VNET_HDR_LEN } from '../../../src/core/packet/vnet.js';
import { addr, buildPacket, ipv4HeaderValid, l4ChecksumValid, withVnet } from '../../helpers/packets.js';
import { decapsulate } from '../../helpers/tunnels.js';

const RIP = '198.18.1.11';
const TARGET: XmitTarget = {
  addr: addr(RIP),
  port: 8080,
  route: { source: addr('198.18.1.1'), mtu: 1500 },
  tunnel: null,
};
/** The frame buffer a device reads into: room to spare after the frame. */
const FRAME = 4096;

function frameOf(packet: Uint8Array): { frame: Uint8Array; length: number; p: ParsedPacket } {
  const framed = withVnet(packet);
  const frame = new Uint8Array(FRAME);
  frame.set(framed);
  return { frame, length: framed.length, p: parsePacket(frame, VNET_HDR_LEN, packet.length) as ParsedPacket };
}

/** Every tunnel type and checksum option lvsd carries out: the targets a tunnelling method is tried on. */
const TUNNELS: XmitTarget['tunnel'][] = [
  null,
  { type: 'gre', port: 0, csum: 'nocsum' },
  { type: 'gre', port: 0, csum: 'csum' },
  { type: 'gue', port: 6080, csum: 'nocsum' },
  { type: 'gue', port: 6080, csum: 'csum' },
];

/**
 * The packet the real server's stack sees: the frame's IP packet, unwrapped from a tunnel's
 * headers when the method must have wrapped it (the real server answers for the VIP, yet the
 * packet goes to the real server's address).
 */
function delivered(method: ForwardingMethod, frame: Uint8Array, length: number): Uint8Array {
  const ip = frame.subarray(VNET_HDR_LEN, length);
  assert.ok(ipv4HeaderValid(ip));
  if (method.toClient !== null || method.delivery !== 'packet-destination') return ip;
  assert.deepEqual([...ip.subarray(16, 20)], [198, 18, 1, 11], 'the outer header goes to the real server');
  const found = decapsulate(ip, 6080);
  assert.equal(typeof found, 'object', String(found));
  return typeof found === 'object' ? found.inner : ip;
}

const clientPacket = fc.record({
  protocol: fc.constantFrom('tcp' as const, 'udp' as const),
  sport: fc.integer({ min: 1, max: 65535 }),
  tcpFlags: fc.constantFrom(0x02, 0x10, 0x18, 0x11),
  payload: fc.uint8Array({ maxLength: 1400 }),
});

for (const name of forwardingMethodNames()) {
  const method: ForwardingMethod = forwardingMethodById(forwardingMethodId(name));
  describe(`forwarding method ${name}`, () => {
    it('is registered under its name', () => {
      assert.equal(method.name, name);
      assert.ok(method.headroom >= 0);
    });

    it('sends a client packet to the real server, valid and within its headroom', () => {
      fc.assert(
        fc.property(clientPacket, fc.constantFrom(...TUNNELS), (spec, tunnel) => {
          const packet = buildPacket({ src: '198.18.0.100', dst: '198.18.0.1', dport: 80, ...spec });
          const { frame, length, p } = frameOf(packet);
          const extra: Uint8Array[] = [];
          const target = { ...TARGET, tunnel: name === 'tunnel' ? tunnel : null };
          const out = method.toRealServer(frame, 0, length, p, target, extra);
          assert.ok(out > 0 && out <= length + method.headerLength(target), `frame length ${out}`);
          assert.ok(method.headerLength(target) <= method.headroom);
          assert.deepEqual(extra, []);
          const inner = delivered(method, frame, out);
          assert.ok(l4ChecksumValid(inner));
          // A real server that answers the client itself holds the VIP: the packet still says VIP.
          const destination = method.toClient === null ? [198, 18, 0, 1] : [198, 18, 1, 11];
          assert.deepEqual([...inner.subarray(16, 20)], destination);
          // The link delivers to the frame's IP destination unless the method says otherwise.
          const onTheWire = [...frame.subarray(VNET_HDR_LEN + 16, VNET_HDR_LEN + 20)];
          assert.equal(method.delivery === 'packet-destination', onTheWire.join('.') === RIP);
        }),
      );
    });

    it('never throws on garbage parsed as a packet', () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 20, maxLength: 200 }), (bytes) => {
          const frame = new Uint8Array(FRAME);
          frame.set(withVnet(bytes));
          const p = parsePacket(frame, VNET_HDR_LEN, bytes.length);
          if (!p.ok || p.l4Offset < 0) return;
          method.toRealServer(frame, 0, bytes.length + VNET_HDR_LEN, p, TARGET, []);
        }),
      );
    });

    it('moves TCP through INPUT_ONLY exactly when replies bypass the director', () => {
      assert.equal(method.clientDirection, method.toClient === null ? 'in-only' : 'in');
    });
  });
}
