import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { IPPROTO_UDP } from '../../../src/core/inet.js';
import {
  CONN_F_HASHED,
  CONN_F_IN_SEQ,
  CONN_F_OUT_SEQ,
  CONN_F_TEMPLATE,
  syncStateName,
  type SyncConn,
} from '../../../src/core/sync/conn.js';
import {
  decode,
  encode,
  encodingLength,
  entryLength,
  packSyncMessages,
  SYNC_MAX_CONNS,
  type SyncDecodeResult,
} from '../../../src/core/sync/message.js';
import { addr, hex } from '../../helpers/packets.js';
import { exampleConn, exampleUdp, syncConnArb } from './arbitrary.js';

/** Bytes from hex text written with spaces, newlines and `#` comments. */
function bytes(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text.replace(/#.*$/gm, '').replace(/\s+/g, ''), 'hex'));
}

const ESTABLISHED_V4 = exampleConn({
  cport: 40000,
  vport: 80,
  dport: 8080,
  timeoutSec: 900,
  caddr: addr('198.18.0.2'),
  vaddr: addr('198.18.0.1'),
  daddr: addr('198.18.1.11'),
});

// struct ip_vs_sync_mesg + one struct ip_vs_sync_v4.
const ESTABLISHED_V4_BYTES = `
  00          # reserved (0 marks v1)
  07          # syncid
  002c        # size: 8 + 36
  01          # nr_conns
  01          # version
  0000        # spare
  00          # type: IPv4
  06          # protocol: TCP
  0024        # ver_size: version 0, 36 bytes
  00000000    # flags: masquerading
  0001        # state: ESTABLISHED
  9c40        # cport 40000
  0050        # vport 80
  1f90        # dport 8080
  00000000    # fwmark
  00000384    # timeout 900 s
  c6120002    # caddr 198.18.0.2
  c6120001    # vaddr 198.18.0.1
  c612010b    # daddr 198.18.1.11
`;

const SEQ_V4 = exampleConn({
  flags: CONN_F_IN_SEQ | CONN_F_OUT_SEQ,
  cport: 1025,
  vport: 21,
  dport: 21,
  timeoutSec: 120,
  caddr: addr('198.18.0.2'),
  vaddr: addr('198.18.0.1'),
  daddr: addr('198.18.1.12'),
  state: 4,
  seq: {
    in: { initSeq: 0x11111111, delta: 16, previousDelta: 0 },
    out: { initSeq: 0x22222222, delta: 0xfffffff0, previousDelta: 8 },
  },
});
const UDP_V6 = exampleUdp({
  caddr: addr('2001:db8::2'),
  vaddr: addr('2001:db8::1'),
  daddr: addr('2001:db8:1::11'),
});

// Two entries: the first, 62 bytes long, is followed by 2 bytes of padding.
const TWO_ENTRIES_BYTES = `
  00 03 0090 02 01 0000            # header: syncid 3, size 144 = 8 + 62 + 2 + 72, 2 conns
  00 06 003e                       # IPv4 TCP, 36 + 26 bytes
  00000600                         # flags: IP_VS_CONN_F_IN_SEQ | IP_VS_CONN_F_OUT_SEQ
  0004 0401 0015 0015              # state FIN_WAIT, cport 1025, vport 21, dport 21
  00000000 00000078                # fwmark 0, timeout 120 s
  c6120002 c6120001 c612010c       # caddr, vaddr, daddr
  01 18                            # IPVS_OPT_SEQ_DATA, 24 bytes (struct ip_vs_sync_conn_options)
  11111111 00000010 00000000       # in_seq: init_seq, delta, previous_delta
  22222222 fffffff0 00000008       # out_seq
  0000                             # padding to a 4-byte boundary
  01 11 0048                       # type IPv6, UDP, 72 bytes (struct ip_vs_sync_v6)
  00000000 0000 1388 0035 0035     # flags, state NORMAL, cport 5000, vport 53, dport 53
  00000000 0000012c                # fwmark 0, timeout 300 s
  20010db8000000000000000000000002 # caddr 2001:db8::2
  20010db8000000000000000000000001 # vaddr 2001:db8::1
  20010db8000100000000000000000011 # daddr 2001:db8:1::11
`;

const SIP_TEMPLATE = exampleConn({
  protocol: IPPROTO_UDP,
  flags: CONN_F_TEMPLATE,
  state: 0,
  vport: 5060,
  dport: 5060,
  timeoutSec: 360,
  caddr: addr('198.18.0.2'),
  vaddr: addr('198.18.0.1'),
  daddr: addr('198.18.1.11'),
  pe: { name: 'sip', data: new TextEncoder().encode('abc') },
});
const SIP_TEMPLATE_BYTES = `
  00 00 0036 01 01 0000            # header: syncid 0, size 54 = 8 + 46
  00 11 002e                       # IPv4 UDP, 36 + 5 + 5 bytes
  00001000                         # flags: IP_VS_CONN_F_TEMPLATE
  0000 0000 13c4 13c4              # state NONE, cport 0, vport 5060, dport 5060
  00000000 00000168                # fwmark 0, timeout 360 s
  c6120002 c6120001 c612010b
  02 03 616263                     # IPVS_OPT_PE_DATA "abc" (the Call-ID)
  03 03 736970                     # IPVS_OPT_PE_NAME "sip"
`;

function accepted(result: SyncDecodeResult): Extract<SyncDecodeResult, { ok: true }> {
  assert.ok(result.ok, `refused: ${result.ok ? '' : result.reason}`);
  return result;
}

test('an IPv4 connection encodes as struct ip_vs_sync_mesg + struct ip_vs_sync_v4', () => {
  const message = { syncId: 7, conns: [ESTABLISHED_V4] };
  assert.equal(hex(encode(message)), hex(bytes(ESTABLISHED_V4_BYTES)));
  assert.equal(encodingLength(message), 44);
  assert.equal(encode.bytes, 44);
  const back = accepted(decode(bytes(ESTABLISHED_V4_BYTES)));
  assert.deepEqual(back, { ok: true, version: 1, syncId: 7, conns: [ESTABLISHED_V4], skipped: [] });
  assert.equal(back.conns[0]!.stateName, 'ESTABLISHED');
});

test('sequence options, padding between entries and an IPv6 entry match the kernel layout', () => {
  const message = { syncId: 3, conns: [SEQ_V4, UDP_V6] };
  assert.equal(hex(encode(message)), hex(bytes(TWO_ENTRIES_BYTES)));
  const back = accepted(decode(bytes(TWO_ENTRIES_BYTES)));
  assert.deepEqual(back.conns, [SEQ_V4, UDP_V6]);
  assert.deepEqual(
    back.conns.map((c) => c.stateName),
    ['FIN_WAIT', 'UDP'],
  );
});

test('a persistence template carries PE data then PE name', () => {
  assert.equal(hex(encode({ syncId: 0, conns: [SIP_TEMPLATE] })), hex(bytes(SIP_TEMPLATE_BYTES)));
  const back = accepted(decode(bytes(SIP_TEMPLATE_BYTES)));
  assert.deepEqual(back.conns, [SIP_TEMPLATE]);
  assert.equal(back.conns[0]!.stateName, 'NONE');
  // From a socket's Buffer too: the PE data is a plain copy, not a view of the datagram.
  const datagram = Buffer.from(bytes(SIP_TEMPLATE_BYTES));
  const fromBuffer = accepted(decode(datagram));
  datagram.fill(0);
  assert.deepEqual(fromBuffer.conns, [SIP_TEMPLATE]);
});

test('IP_VS_CONN_F_HASHED is never sent nor taken, as the kernel masks it', () => {
  const sent = encode({ syncId: 1, conns: [{ ...ESTABLISHED_V4, flags: CONN_F_HASHED | 0x100 }] });
  assert.equal(accepted(decode(sent)).conns[0]!.flags, 0x100);
  const hashedOnWire = bytes(ESTABLISHED_V4_BYTES);
  hashedOnWire[15] = CONN_F_HASHED;
  assert.equal(accepted(decode(hashedOnWire)).conns[0]!.flags, 0);
});

test('a v0 message (struct ip_vs_sync_mesg_v0, 24-byte entries) is still read, as the kernel reads it', () => {
  const v0 = bytes(`
    02 05 0034                     # nr_conns 2, syncid 5, size 52 = 4 + 24 + 24
    00 06 9c40 0050 1f90           # reserved, TCP, cport, vport, dport
    c6120002 c6120001 c612010b     # caddr, vaddr, daddr
    0000 0001                      # flags (16 bits), state ESTABLISHED
    00 01 0000 0000 0000           # ICMP: no IPVS protocol, skipped
    c6120002 c6120001 c612010b
    0000 0000
  `);
  const back = accepted(decode(v0));
  assert.equal(back.version, 0);
  assert.equal(back.syncId, 5);
  assert.deepEqual(back.conns, [{ ...ESTABLISHED_V4, timeoutSec: 0 }]);
  assert.deepEqual(back.skipped, [{ index: 1, reason: 'unsupported-protocol' }]);
});

test('v0 sequence options follow the entry when its flags ask for them', () => {
  const v0 = bytes(`
    01 00 0034                     # 1 conn, size 4 + 24 + 24
    00 06 0401 0015 0015 c6120002 c6120001 c612010c
    0600 0004                      # IN_SEQ | OUT_SEQ, FIN_WAIT
    11111111 00000010 00000000 22222222 fffffff0 00000008
  `);
  assert.deepEqual(accepted(decode(v0)).conns, [{ ...SEQ_V4, timeoutSec: 0 }]);
  assert.deepEqual(decode(v0.slice(0, 40)), { ok: false, reason: 'bad-size' });
  const cut = v0.slice(0, 40);
  cut[3] = 40;
  assert.deepEqual(decode(cut), { ok: false, reason: 'truncated-entry' });
});

/** A copy of `hexText` with `edit` applied, the size field fixed to the new length. */
function edited(hexText: string, edit: (b: Uint8Array) => Uint8Array | void): Uint8Array {
  const b = bytes(hexText);
  const out = edit(b) ?? b;
  new DataView(out.buffer, out.byteOffset).setUint16(2, out.length);
  return out;
}

test('malformed datagrams are refused with the reason, as ip_vs_process_message drops them', () => {
  const cases: [string, Uint8Array, string][] = [
    ['3 bytes', bytes('000700'), 'short'],
    ['a v1 header cut short', edited('00 07 0000 01 01', () => undefined), 'short'],
    ['size field not the datagram length', bytes(ESTABLISHED_V4_BYTES).slice(0, 43), 'bad-size'],
    ['version 2', edited(ESTABLISHED_V4_BYTES, (b) => void (b[5] = 2)), 'bad-version'],
    ['spare not 0', edited(ESTABLISHED_V4_BYTES, (b) => void (b[7] = 1)), 'bad-version'],
    ['nr_conns past the data', edited(ESTABLISHED_V4_BYTES, (b) => void (b[4] = 2)), 'truncated-entry'],
    [
      'entry longer than the datagram',
      edited(ESTABLISHED_V4_BYTES, (b) => void (b[11] = 0x30)),
      'truncated-entry',
    ],
    ['entry version 1', edited(ESTABLISHED_V4_BYTES, (b) => void (b[10] = 0x10)), 'bad-entry-version'],
    ['entry type 2', edited(ESTABLISHED_V4_BYTES, (b) => void (b[8] = 2)), 'bad-entry-type'],
    [
      'entry shorter than its struct',
      edited(ESTABLISHED_V4_BYTES, (b) => {
        b[11] = 0x20;
      }),
      'bad-entry-length',
    ],
    [
      'an option of length 0',
      edited(ESTABLISHED_V4_BYTES, (b) => {
        const out = new Uint8Array([...b, 0x07, 0x00]);
        out[11] = 38;
        return out;
      }),
      'bad-entry-length',
    ],
    [
      'an option header cut by the entry end',
      edited(ESTABLISHED_V4_BYTES, (b) => {
        const out = new Uint8Array([...b, 0x01]);
        out[11] = 37;
        return out;
      }),
      'bad-entry-length',
    ],
    ['sequence option of 20 bytes', edited(TWO_ENTRIES_BYTES, (b) => void (b[8 + 37] = 20)), 'bad-option'],
    [
      'sequence option twice',
      edited(ESTABLISHED_V4_BYTES, (b) => {
        const opt = [0x01, 0x18, ...new Array<number>(24).fill(0)];
        const out = new Uint8Array([...b, ...opt, ...opt]);
        out[11] = 36 + 52;
        return out;
      }),
      'bad-option',
    ],
    [
      'a sequence option of the wrong length',
      edited(ESTABLISHED_V4_BYTES, (b) => {
        const out = new Uint8Array([...b, 0x01, 0x04, 0, 0, 0, 0]);
        out[11] = 42;
        return out;
      }),
      'bad-option',
    ],
    [
      'a PE name longer than 16',
      edited(ESTABLISHED_V4_BYTES, (b) => {
        const out = new Uint8Array([...b, 0x03, 17, ...new Array<number>(17).fill(0x61)]);
        out[11] = 36 + 19;
        return out;
      }),
      'bad-option',
    ],
  ];
  for (const [what, datagram, reason] of cases)
    assert.deepEqual(decode(datagram), { ok: false, reason }, what);
});

test('entries the kernel skips are left out with the reason, the rest of the message kept', () => {
  const withOption = (option: number[]) =>
    edited(ESTABLISHED_V4_BYTES, (b) => {
      const out = new Uint8Array([...b, ...option, ...bytes(ESTABLISHED_V4_BYTES).slice(8)]);
      out[4] = 2;
      out[11] = 36 + option.length;
      return out;
    });
  // Option 5 is unknown: mandatory, the entry goes; with IPVS_OPT_F_PARAM it is ignored.
  assert.deepEqual(accepted(decode(withOption([0x05, 0x02, 0xaa, 0xbb]))).skipped, [
    { index: 0, reason: 'unknown-option' },
  ]);
  const optional = accepted(decode(withOption([0x45, 0x02, 0xaa, 0xbb])));
  assert.deepEqual(optional.conns, [ESTABLISHED_V4, ESTABLISHED_V4]);
  // PE data without the engine's name.
  assert.deepEqual(accepted(decode(withOption([0x02, 0x02, 0xaa, 0xbb]))).skipped, [
    { index: 0, reason: 'bad-pe' },
  ]);
  const badState = accepted(decode(edited(ESTABLISHED_V4_BYTES, (b) => void (b[17] = 11))));
  assert.deepEqual([badState.conns, badState.skipped], [[], [{ index: 0, reason: 'bad-state' }]]);
  const icmp = accepted(decode(edited(ESTABLISHED_V4_BYTES, (b) => void (b[9] = 1))));
  assert.deepEqual(icmp.skipped, [{ index: 0, reason: 'unsupported-protocol' }]);
  // A template of a fwmark service has protocol 0 (IPPROTO_IP): the kernel takes it.
  const fwmTemplate = accepted(decode(edited(SIP_TEMPLATE_BYTES, (b) => void (b[9] = 0))));
  assert.equal(fwmTemplate.conns.length, 1);
});

test('encode and decode round-trip any valid message, also at an offset in a larger buffer', () => {
  fc.assert(
    fc.property(
      fc.array(syncConnArb, { maxLength: 40 }),
      fc.integer({ min: 0, max: 255 }),
      (conns, syncId) => {
        const message = { syncId, conns };
        const once = encode(message);
        assert.equal(once.length, encodingLength(message));
        assert.deepEqual(accepted(decode(once)), { ok: true, version: 1, syncId, conns, skipped: [] });
        const big = new Uint8Array(once.length + 20).fill(0xee);
        encode(message, big, 10);
        assert.equal(hex(big.subarray(10, 10 + once.length)), hex(once));
        assert.deepEqual(accepted(decode(big, 10, 10 + once.length)).conns, conns);
        assert.equal(hex(encode(accepted(decode(once)))), hex(once));
      },
    ),
    { numRuns: 300 },
  );
});

test('the builder packs entries into messages no longer than sync_maxlen, in order', () => {
  fc.assert(
    fc.property(
      fc.array(syncConnArb, { maxLength: 120 }),
      fc.integer({ min: 80, max: 1500 }),
      (conns, maxLen) => {
        const messages = packSyncMessages(conns, 9, maxLen);
        const back = messages.flatMap((m) => accepted(decode(m)).conns);
        assert.deepEqual(back, conns);
        for (const m of messages) {
          const n = accepted(decode(m)).conns.length;
          // Over the limit only when one entry alone does not fit, as ip_vs_sync_buff_create allows.
          assert.ok(m.length <= maxLen || n === 1, `${m.length} > ${maxLen} with ${n} entries`);
        }
        // No message could have taken the next one's first entry.
        for (let i = 0; i + 1 < messages.length; i++) {
          const next = accepted(decode(messages[i + 1]!)).conns[0]!;
          const n = accepted(decode(messages[i]!)).conns.length;
          const len = messages[i]!.length;
          assert.ok(len + ((4 - (len & 3)) & 3) + entryLength(next) > maxLen || n === SYNC_MAX_CONNS);
        }
      },
    ),
    { numRuns: 200 },
  );
});

test('a message never holds more than 255 entries (nr_conns is a byte)', () => {
  const conns = new Array<SyncConn>(600).fill(ESTABLISHED_V4);
  const messages = packSyncMessages(conns, 1, 65507);
  assert.deepEqual(
    messages.map((m) => m[4]),
    [255, 255, 90],
  );
});

/** A decoded record agrees with itself: what a table import can rely on. */
function assertConsistent(c: SyncConn): void {
  assert.ok(c.af === 4 || c.af === 6);
  for (const a of [c.caddr, c.vaddr, c.daddr]) assert.equal(a.af, c.af);
  assert.equal(c.stateName, syncStateName(c.protocol, c.flags, c.state));
  for (const n of [c.cport, c.vport, c.dport]) assert.ok(Number.isInteger(n) && n >= 0 && n <= 0xffff);
  for (const n of [c.flags, c.fwmark, c.timeoutSec])
    assert.ok(Number.isInteger(n) && n >= 0 && n <= 0xffffffff);
  if (c.pe) assert.ok(c.pe.data.length >= 1 && c.pe.name.length >= 1 && c.pe.name.length <= 16);
}

test('fuzz: decode never throws and every record it returns is consistent', () => {
  const checkAny = (datagram: Uint8Array) => {
    const result = decode(datagram);
    if (!result.ok) return;
    result.conns.forEach(assertConsistent);
    // What was accepted encodes again (as v1) and reads back the same.
    const again = accepted(decode(encode({ syncId: result.syncId, conns: result.conns })));
    assert.deepEqual(again.conns, result.conns);
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), checkAny), { numRuns: 2000 });
  // Random bytes rarely pass the size check: mutate real messages with their size kept right.
  fc.assert(
    fc.property(
      fc.array(syncConnArb, { minLength: 1, maxLength: 5 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
      fc.integer({ min: -8, max: 8 }),
      (conns, flips, resize) => {
        const clean = encode({ syncId: 1, conns });
        const len = Math.max(4, clean.length + resize);
        const datagram = new Uint8Array(len);
        datagram.set(clean.subarray(0, len));
        for (const [at, value] of flips) if (at % len >= 4) datagram[at % len] = value;
        new DataView(datagram.buffer).setUint16(2, len);
        checkAny(datagram);
      },
    ),
    { numRuns: 3000 },
  );
});
