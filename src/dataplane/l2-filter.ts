// Which frames the layer-2 data plane takes from the wire, said once and written twice: as the
// classic BPF program on lvsd's AF_PACKET sockets (which copy them to lvsd) and as the nft
// `table netdev` ingress chain that drops them for the kernel (which must not handle them too).
// Both come from the same FilterSpec, so a frame is either lvsd's on both or on neither.
//
// A frame is the director's when it is for the host (pkttype host), untagged, IPv4 or IPv6 with
// no extension header, not a later fragment, and it is
//   - to a VIP's protocol and port (a client's packet),
//   - from a masqueraded real server's address, protocol and port, to an address that is not one
//     of the host's own (a reply; a health check's answers to the DIP stay the host's),
//   - an ICMP error to a VIP, or from such a real server to an address not the host's.
// What is left (fragments, IPv6 extension headers, fwmark services) reaches the kernel, whose
// `table inet lvsd` steers it to the TUN device as on --dataplane tun: a slower path, not a lost one.
//
// lvsd's frames are split between two rings per interface (FilterPart): a small SYN's (a TCP
// segment with SYN and none of ACK, RST, FIN: a new connection, or a flood) and everything else,
// so that a SYN flood fills its own ring and not the one the connections' packets arrive in.

import {
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  formatAddr,
  type Addr,
} from '../core/inet.js';

export interface FilterEndpoint {
  addr: Addr;
  protocol: number;
  port: number;
}

export interface FilterSpec {
  /** VIP, protocol, port of each (non-fwmark) service. */
  services: FilterEndpoint[];
  /** Address, protocol, port of each masquerading real server. */
  realServers: FilterEndpoint[];
  /** The host's own addresses that are no VIP. */
  locals: Addr[];
  /**
   * VIP, protocol, port of each service on one of the host's own addresses whose real servers answer
   * the clients themselves (direct routing, tunnelling): their replies, when the real servers route
   * them through the director, have the host's own address as source, which the kernel drops as
   * martians (accept_local=0). lvsd takes them and gives them to the kernel through its device,
   * which accepts local sources, and the kernel forwards them.
   */
  directReplies: FilterEndpoint[];
}

export const EMPTY_FILTER: FilterSpec = { services: [], realServers: [], locals: [], directReplies: [] };

// Classic BPF (linux/filter.h, linux/bpf_common.h).
const LD = 0x00;
const LDX = 0x01;
const ST = 0x02;
const ALU = 0x04;
const JMP = 0x05;
const RET = 0x06;
const W = 0x00;
const H = 0x08;
const B = 0x10;
const ABS = 0x20;
const IND = 0x40;
const MEM = 0x60;
const MSH = 0xa0;
const IMM = 0x00;
const JA = 0x00;
const JEQ = 0x10;
const AND = 0x50;
/** SKF_AD_OFF + SKF_AD_PKTTYPE / SKF_AD_VLAN_TAG_PRESENT: ancillary loads. */
const AD_PKTTYPE = 0xfffff004;
const AD_VLAN_TAG_PRESENT = 0xfffff030;
const PACKET_HOST = 0;
const ETH_HLEN = 14;
/** What an accepting program returns: the whole frame. */
const ACCEPT = 0x40000;
/** Jump offsets are 8 bits. */
const MAX_JUMP = 255;
/** BPF_MAXINSNS. */
export const MAX_INSTRUCTIONS = 4096;

/** Scratch memory slots the preludes fill: daddr (4 words), saddr (4), protocol, ports, ICMP type, "to a local address". */
const M_DADDR = 0;
const M_SADDR = 4;
const M_PROTO = 8;
const M_SPORT = 9;
const M_DPORT = 10;
const M_ICMP_TYPE = 11;
const M_LOCAL = 12;
/** 1 for a SYN small enough for the handshake ring (see FilterPart), else 0. */
const M_SYN = 13;
/** TCP flags FIN, SYN, RST, ACK: a SYN has SYN alone of them. */
const HANDSHAKE_FLAGS = 0x17;
const SYN_ONLY = 0x02;

/**
 * Which of lvsd's frames a program takes: all of them (what nft drops for the kernel), the SYNs of
 * at most 1023 bytes of IPv4 or 511 of IPv6 payload (the handshake ring's small slots), or the rest.
 */
export type FilterPart = 'all' | 'handshakes' | 'rest';

const ICMP4_ERRORS = [3, 11, 12];
const ICMP6_ERRORS = [1, 2, 3, 4];

export interface Instruction {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

const insn = (code: number, k = 0, jt = 0, jf = 0): Instruction => ({ code, jt, jf, k: k >>> 0 });

/** One test inside a block: load a slot and compare it to k (any of ks). */
interface Test {
  slot: number;
  ks: number[];
}

function words(addr: Addr): number[] {
  return addr.af === 4 ? [addr.a] : [addr.a, addr.b, addr.c, addr.d];
}

function addrTests(slot: number, addr: Addr): Test[] {
  return words(addr).map((k, i) => ({ slot: slot + i, ks: [k] }));
}

/**
 * A block: every test must pass, then `ret ACCEPT`; a failed test jumps past the block. Each
 * test of several values is `jeq k1, pass; jeq k2, pass; ...; jeq kn, 0, fail`.
 */
function block(tests: Test[]): Instruction[] {
  const size = tests.reduce((n, t) => n + 1 + t.ks.length, 0) + 1;
  const out: Instruction[] = [];
  for (const test of tests) {
    out.push(insn(LD | MEM, test.slot));
    test.ks.forEach((k, i) => {
      const last = i === test.ks.length - 1;
      const toEnd = size - out.length - 1;
      if (toEnd > MAX_JUMP) throw new Error('the frame filter has a test too long for a BPF jump');
      // On a match, the next test starts after the remaining alternatives.
      out.push(last ? insn(JMP | JEQ, k, 0, toEnd) : insn(JMP | JEQ, k, test.ks.length - 1 - i, 0));
    });
  }
  out.push(insn(RET, ACCEPT));
  return out;
}

/** Stops with "not ours" unless A equals k. */
function require(k: number): Instruction[] {
  return [insn(JMP | JEQ, k, 1, 0), insn(RET, 0)];
}

/** M_LOCAL = 1 when the destination is one of `locals` (each compared word by word). */
function localFlag(locals: Addr[]): Instruction[] {
  const out: Instruction[] = [];
  for (const local of locals) {
    const w = words(local);
    // Per word: load, compare; a mismatch skips to the next address's compare.
    const size = w.length * 2 + 1;
    w.forEach((k, i) => {
      out.push(insn(LD | MEM, M_DADDR + i), insn(JMP | JEQ, k, 0, size - 2 * i - 2));
    });
    out.push(insn(JMP | JA, 0)); // patched below: to "set 1"
  }
  const setOne = out.length + 2;
  out.forEach((ins, i) => {
    if (ins.code === (JMP | JA)) ins.k = setOne - i - 1;
  });
  out.push(insn(LD | IMM, 0), insn(JMP | JA, 1), insn(LD | IMM, 1), insn(ST, M_LOCAL));
  return out;
}

/**
 * M_SYN from the loaded slots and the frame: `flagsLoad` reads the TCP flags byte (the IPv4 header's
 * length in X), `lengthLoad` the IP length field, which must be clear under `lengthMask`.
 */
function synFlag(flagsLoad: Instruction, lengthLoad: Instruction, lengthMask: number): Instruction[] {
  // Each failed test jumps to `ld #0`, the second instruction from the end.
  return [
    insn(LD | MEM, M_PROTO),
    insn(JMP | JEQ, IPPROTO_TCP, 0, 8),
    flagsLoad,
    insn(ALU | AND, HANDSHAKE_FLAGS),
    insn(JMP | JEQ, SYN_ONLY, 0, 5),
    lengthLoad,
    insn(ALU | AND, lengthMask),
    insn(JMP | JEQ, 0, 0, 2),
    insn(LD | IMM, 1),
    insn(JMP | JA, 1),
    insn(LD | IMM, 0),
    insn(ST, M_SYN),
  ];
}

/** For a part of the frames, the frames of the other part stop here. */
function partTest(part: FilterPart): Instruction[] {
  if (part === 'all') return [];
  return [insn(LD | MEM, M_SYN), ...require(part === 'handshakes' ? 1 : 0)];
}

function rules(spec: FilterSpec, af: 4 | 6): Instruction[] {
  const icmp = af === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6;
  const errors = af === 4 ? ICMP4_ERRORS : ICMP6_ERRORS;
  const out: Instruction[] = [];
  const notLocal: Test = { slot: M_LOCAL, ks: [0] };
  const vips = unique(spec.services.filter((s) => s.addr.af === af).map((s) => s.addr));
  const rips = unique(spec.realServers.filter((s) => s.addr.af === af).map((s) => s.addr));
  for (const s of spec.services.filter((s) => s.addr.af === af))
    out.push(
      ...block([
        ...addrTests(M_DADDR, s.addr),
        { slot: M_PROTO, ks: [s.protocol] },
        { slot: M_DPORT, ks: [s.port] },
      ]),
    );
  // Replies: a masquerading real server's, and a directly answering one's from the host's own VIP.
  for (const r of [...spec.realServers, ...spec.directReplies].filter((r) => r.addr.af === af))
    out.push(
      ...block([
        ...addrTests(M_SADDR, r.addr),
        { slot: M_PROTO, ks: [r.protocol] },
        { slot: M_SPORT, ks: [r.port] },
        notLocal,
      ]),
    );
  const isError: Test[] = [
    { slot: M_PROTO, ks: [icmp] },
    { slot: M_ICMP_TYPE, ks: errors },
  ];
  for (const vip of vips) out.push(...block([...isError, ...addrTests(M_DADDR, vip)]));
  for (const rip of rips) out.push(...block([...isError, ...addrTests(M_SADDR, rip), notLocal]));
  out.push(insn(RET, 0));
  return out;
}

function unique(addrs: Addr[]): Addr[] {
  return [...new Map(addrs.map((a) => [formatAddr(a), a])).values()];
}

function locals(spec: FilterSpec, af: 4 | 6): Instruction[] {
  return localFlag(spec.locals.filter((l) => l.af === af));
}

function ipv4(spec: FilterSpec, part: FilterPart): Instruction[] {
  const ip = ETH_HLEN;
  return [
    insn(LD | B | ABS, ip),
    insn(ALU | AND, 0xf0),
    ...require(0x40),
    // A fragment (MF or an offset) stays the kernel's: it reassembles the datagram and steers it
    // to the TUN device whole, as on --dataplane tun.
    insn(LD | H | ABS, ip + 6),
    insn(ALU | AND, 0x3fff),
    ...require(0),
    insn(LD | W | ABS, ip + 16),
    insn(ST, M_DADDR),
    insn(LD | W | ABS, ip + 12),
    insn(ST, M_SADDR),
    insn(LD | B | ABS, ip + 9),
    insn(ST, M_PROTO),
    insn(LDX | B | MSH, ip),
    insn(LD | H | IND, ip),
    insn(ST, M_SPORT),
    insn(LD | H | IND, ip + 2),
    insn(ST, M_DPORT),
    insn(LD | B | IND, ip),
    insn(ST, M_ICMP_TYPE),
    ...synFlag(insn(LD | B | IND, ip + 13), insn(LD | H | ABS, ip + 2), 0xfc00),
    ...partTest(part),
    ...locals(spec, 4),
    ...rules(spec, 4),
  ];
}

function ipv6(spec: FilterSpec, part: FilterPart): Instruction[] {
  const ip = ETH_HLEN;
  const load = (offset: number, slot: number, size = W): Instruction[] => [
    insn(LD | size | ABS, ip + offset),
    insn(ST, slot),
  ];
  return [
    insn(LD | B | ABS, ip),
    insn(ALU | AND, 0xf0),
    ...require(0x60),
    ...[0, 1, 2, 3].flatMap((i) => load(24 + 4 * i, M_DADDR + i)),
    ...[0, 1, 2, 3].flatMap((i) => load(8 + 4 * i, M_SADDR + i)),
    ...load(6, M_PROTO, B),
    ...load(40, M_SPORT, H),
    ...load(42, M_DPORT, H),
    ...load(40, M_ICMP_TYPE, B),
    ...synFlag(insn(LD | B | ABS, ip + 40 + 13), insn(LD | H | ABS, ip + 4), 0xfe00),
    ...partTest(part),
    ...locals(spec, 6),
    ...rules(spec, 6),
  ];
}

/** The program, as instructions. Throws when the spec needs more than the kernel takes. */
export function filterProgram(spec: FilterSpec, part: FilterPart = 'all'): Instruction[] {
  const v4 = ipv4(spec, part);
  const v6 = ipv6(spec, part);
  const head = [
    insn(LD | W | ABS, AD_PKTTYPE),
    ...require(PACKET_HOST),
    insn(LD | W | ABS, AD_VLAN_TAG_PRESENT),
    ...require(0),
    insn(LD | H | ABS, 12),
    // IPv6 is far: over the IPv4 part with a 32-bit jump.
    insn(JMP | JEQ, 0x86dd, 0, 1),
    insn(JMP | JA, v4.length + 2),
    ...require(0x0800),
  ];
  const program = [...head, ...v4, ...v6];
  if (program.length > MAX_INSTRUCTIONS)
    throw new Error(
      `the frame filter needs ${program.length} BPF instructions, more than the kernel's ${MAX_INSTRUCTIONS}: too many services and real servers for --dataplane packet`,
    );
  return program;
}

/** The program as `struct sock_filter[]` (8 bytes each, host order: little-endian here). */
export function encodeProgram(program: readonly Instruction[]): Buffer {
  const out = Buffer.alloc(program.length * 8);
  program.forEach((ins, i) => {
    out.writeUInt16LE(ins.code, i * 8);
    out.writeUInt8(ins.jt, i * 8 + 2);
    out.writeUInt8(ins.jf, i * 8 + 3);
    out.writeUInt32LE(ins.k, i * 8 + 4);
  });
  return out;
}

/**
 * What the program returns for a frame: a classic BPF interpreter of the instructions this file
 * emits (for the tests, and for the fake device: the same verdict the kernel would give).
 */
export function runProgram(
  program: readonly Instruction[],
  frame: Uint8Array,
  meta: { pkttype: number; vlanTagged: boolean },
): number {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const mem = new Uint32Array(16);
  let a = 0;
  let x = 0;
  const loadAbs = (offset: number, size: number): number | null => {
    if (offset === AD_PKTTYPE) return meta.pkttype;
    if (offset === AD_VLAN_TAG_PRESENT) return meta.vlanTagged ? 1 : 0;
    if (offset + size > frame.length) return null;
    return size === 4 ? view.getUint32(offset) : size === 2 ? view.getUint16(offset) : view.getUint8(offset);
  };
  for (let pc = 0; pc < program.length; pc++) {
    const { code, jt, jf, k } = program[pc]!;
    const cls = code & 0x07;
    const size = (code & 0x18) === H ? 2 : (code & 0x18) === B ? 1 : 4;
    const mode = code & 0xe0;
    if (cls === LD) {
      if (mode === IMM) a = k;
      else if (mode === MEM) a = mem[k]!;
      else {
        const v = loadAbs(mode === IND ? x + k : k, size);
        if (v === null) return 0;
        a = v;
      }
    } else if (cls === LDX) {
      if (k >= frame.length) return 0;
      x = (frame[k]! & 0xf) * 4;
    } else if (cls === ST) mem[k] = a;
    else if (cls === ALU) a = (a & k) >>> 0;
    else if (cls === JMP) {
      if ((code & 0xf0) === JA) pc += k;
      else pc += a === k ? jt : jf;
    } else if (cls === RET) return k;
  }
  return 0;
}

// ---- the same set as nft rules ----

function protocolName(protocol: number): string {
  return protocol === IPPROTO_TCP ? 'tcp' : protocol === IPPROTO_UDP ? 'udp' : 'sctp';
}

/** The elements of the named sets the ruleset uses. */
function setElements(spec: FilterSpec): Map<string, string[]> {
  const sets = new Map<string, string[]>();
  const add = (name: string, element: string): void => {
    const list = sets.get(name) ?? [];
    if (!list.includes(element)) list.push(element);
    sets.set(name, list);
  };
  for (const s of spec.services) {
    add(`svc${s.addr.af}`, `${formatAddr(s.addr)} . ${protocolName(s.protocol)} . ${s.port}`);
    add(`vip${s.addr.af}`, formatAddr(s.addr));
  }
  for (const r of spec.realServers) {
    add(`real${r.addr.af}`, `${formatAddr(r.addr)} . ${protocolName(r.protocol)} . ${r.port}`);
    add(`rip${r.addr.af}`, formatAddr(r.addr));
  }
  for (const l of spec.locals) add(`local${l.af}`, formatAddr(l));
  for (const r of spec.directReplies)
    add(`reply${r.addr.af}`, `${formatAddr(r.addr)} . ${protocolName(r.protocol)} . ${r.port}`);
  return sets;
}

/**
 * The nft script that (re)creates `table netdev <table>` whole: one ingress chain per interface,
 * each jumping to the rules, which drop exactly what filterProgram() takes.
 */
export function netdevScript(table: string, interfaces: readonly string[], spec: FilterSpec): string {
  const t = `netdev ${table}`;
  const tuple = (af: 4 | 6) => `ipv${af}_addr . inet_proto . inet_service`;
  // Lives as long as lvsd's nft session (nft-session.ts): a dead lvsd drops nothing here. (A table
  // keeps the owner flag it was made with: the first line may not say otherwise.)
  const lines = [
    `table ${t} { flags owner; }`,
    `delete table ${t}`,
    `table ${t} {`,
    '  flags owner',
    `  set svc4 { type ${tuple(4)}; }`,
    `  set svc6 { type ${tuple(6)}; }`,
    `  set real4 { type ${tuple(4)}; }`,
    `  set real6 { type ${tuple(6)}; }`,
    `  set reply4 { type ${tuple(4)}; }`,
    `  set reply6 { type ${tuple(6)}; }`,
    '  set vip4 { type ipv4_addr; }',
    '  set vip6 { type ipv6_addr; }',
    '  set rip4 { type ipv4_addr; }',
    '  set rip6 { type ipv6_addr; }',
    '  set local4 { type ipv4_addr; }',
    '  set local6 { type ipv6_addr; }',
    '  chain steer {',
    // As the BPF program: for the host, untagged (a VLAN tag shows as ether type 0x8100 here).
    '    meta pkttype != host return',
    '    ether type ip ip frag-off & 0x3fff != 0 return',
    '    ether type ip ip daddr . ip protocol . th dport @svc4 drop',
    '    ether type ip ip saddr . ip protocol . th sport @real4 ip daddr != @local4 drop',
    '    ether type ip ip saddr . ip protocol . th sport @reply4 ip daddr != @local4 drop',
    `    ether type ip ip protocol icmp icmp type { ${ICMP4_ERRORS.join(', ')} } ip daddr @vip4 drop`,
    `    ether type ip ip protocol icmp icmp type { ${ICMP4_ERRORS.join(', ')} } ip saddr @rip4 ip daddr != @local4 drop`,
    // `ip6 nexthdr`, not `meta l4proto`: no extension header, as the BPF program reads offset 40.
    '    ether type ip6 ip6 daddr . ip6 nexthdr . th dport @svc6 drop',
    '    ether type ip6 ip6 saddr . ip6 nexthdr . th sport @real6 ip6 daddr != @local6 drop',
    '    ether type ip6 ip6 saddr . ip6 nexthdr . th sport @reply6 ip6 daddr != @local6 drop',
    `    ether type ip6 ip6 nexthdr icmpv6 icmpv6 type { ${ICMP6_ERRORS.join(', ')} } ip6 daddr @vip6 drop`,
    `    ether type ip6 ip6 nexthdr icmpv6 icmpv6 type { ${ICMP6_ERRORS.join(', ')} } ip6 saddr @rip6 ip6 daddr != @local6 drop`,
    '  }',
    ...interfaces.flatMap((dev, i) => [
      `  chain in${i} {`,
      `    type filter hook ingress device ${JSON.stringify(dev)} priority -500; policy accept;`,
      '    jump steer',
      '  }',
    ]),
    '}',
  ];
  for (const [name, elements] of setElements(spec))
    lines.push(`add element ${t} ${name} { ${elements.join(', ')} }`);
  return `${lines.join('\n')}\n`;
}
