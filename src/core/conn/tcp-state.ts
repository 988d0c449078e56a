// TCP connection states and their transitions as data, as IPVS's tcp_states[] table
// (ip_vs_proto_tcp.c). A state is a small integer on the packet path and an IPVS name in listings.

export const TCP_STATE_NAMES = [
  'NONE',
  'ESTABLISHED',
  'SYN_SENT',
  'SYN_RECV',
  'FIN_WAIT',
  'TIME_WAIT',
  'CLOSE',
  'CLOSE_WAIT',
  'LAST_ACK',
  'LISTEN',
  'SYNACK',
] as const;

export type TcpState = (typeof TCP_STATE_NAMES)[number];
/** What -Lnc shows: a TCP state, or UDP for every UDP connection. */
export type ConnStateName = TcpState | 'UDP';

// Codes index TCP_STATE_NAMES; UDP follows them so one timeout table covers both protocols.
export const S_NONE = 0;
export const S_ESTABLISHED = 1;
export const S_SYN_SENT = 2;
export const S_SYN_RECV = 3;
export const S_FIN_WAIT = 4;
export const S_TIME_WAIT = 5;
export const S_CLOSE = 6;
export const S_CLOSE_WAIT = 7;
export const S_LAST_ACK = 8;
export const S_LISTEN = 9;
export const S_SYNACK = 10;
export const S_UDP = 11;
export const STATE_COUNT = 12;

export const STATE_NAMES: readonly ConnStateName[] = [...TCP_STATE_NAMES, 'UDP'];

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_ACK = 0x10;

/** in: client to director; out: real server reply through the director (NAT); in-only: DR/TUN. */
export type Direction = 'in' | 'out' | 'in-only';

function row(...names: TcpState[]): Uint8Array {
  return Uint8Array.from(names, (name) => TCP_STATE_NAMES.indexOf(name));
}

// Rows per direction in flag order syn, fin, ack, rst; columns in TCP_STATE_NAMES order.
// prettier-ignore
const INPUT = [
  row('SYN_RECV', 'ESTABLISHED', 'ESTABLISHED', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV'),
  row('CLOSE', 'CLOSE_WAIT', 'SYN_SENT', 'TIME_WAIT', 'TIME_WAIT', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'TIME_WAIT'),
  row('CLOSE', 'ESTABLISHED', 'SYN_SENT', 'ESTABLISHED', 'FIN_WAIT', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'CLOSE', 'LISTEN', 'ESTABLISHED'),
  row('CLOSE', 'CLOSE', 'CLOSE', 'SYN_RECV', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE', 'LAST_ACK', 'LISTEN', 'SYN_RECV'),
];
// prettier-ignore
const OUTPUT = [
  row('SYN_SENT', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'SYN_SENT', 'SYN_SENT', 'SYN_SENT', 'SYN_SENT', 'SYN_SENT', 'LISTEN', 'SYN_RECV'),
  row('TIME_WAIT', 'FIN_WAIT', 'SYN_SENT', 'TIME_WAIT', 'FIN_WAIT', 'TIME_WAIT', 'CLOSE', 'TIME_WAIT', 'LAST_ACK', 'LISTEN', 'TIME_WAIT'),
  row('ESTABLISHED', 'ESTABLISHED', 'SYN_SENT', 'ESTABLISHED', 'FIN_WAIT', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'ESTABLISHED', 'ESTABLISHED'),
  row('CLOSE', 'CLOSE', 'SYN_SENT', 'CLOSE', 'CLOSE', 'TIME_WAIT', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE'),
];
// prettier-ignore
const INPUT_ONLY = [
  row('SYN_RECV', 'ESTABLISHED', 'ESTABLISHED', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV'),
  row('CLOSE', 'FIN_WAIT', 'SYN_SENT', 'TIME_WAIT', 'FIN_WAIT', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'TIME_WAIT'),
  row('CLOSE', 'ESTABLISHED', 'SYN_SENT', 'ESTABLISHED', 'FIN_WAIT', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'CLOSE', 'LISTEN', 'ESTABLISHED'),
  row('CLOSE', 'CLOSE', 'CLOSE', 'SYN_RECV', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE', 'LAST_ACK', 'LISTEN', 'CLOSE'),
];

// secure_tcp's table (tcp_states_dos): the client's ACK alone no longer establishes a connection.
// Under NAT it is ESTABLISHED only once the real server has answered past its SYN-ACK, so a SYN
// from a spoofed source, or a SYN followed by a blind ACK, stays half-open (and times out soon).
// prettier-ignore
const INPUT_DOS = [
  row('SYN_RECV', 'ESTABLISHED', 'ESTABLISHED', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV', 'SYN_RECV', 'SYNACK'),
  row('CLOSE', 'CLOSE_WAIT', 'SYN_SENT', 'TIME_WAIT', 'TIME_WAIT', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'SYNACK'),
  row('CLOSE', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'CLOSE', 'LISTEN', 'SYNACK'),
  row('CLOSE', 'CLOSE', 'CLOSE', 'SYN_RECV', 'CLOSE', 'CLOSE', 'CLOSE', 'CLOSE', 'LAST_ACK', 'LISTEN', 'CLOSE'),
];
// prettier-ignore
const OUTPUT_DOS = [
  row('SYN_SENT', 'ESTABLISHED', 'SYN_SENT', 'SYNACK', 'SYN_SENT', 'SYN_SENT', 'SYN_SENT', 'SYN_SENT', 'SYN_SENT', 'LISTEN', 'SYNACK'),
  OUTPUT[1]!,
  OUTPUT[2]!,
  OUTPUT[3]!,
];
// prettier-ignore
const INPUT_ONLY_DOS = [
  row('SYNACK', 'ESTABLISHED', 'ESTABLISHED', 'SYN_RECV', 'SYNACK', 'SYNACK', 'SYNACK', 'SYNACK', 'SYNACK', 'SYNACK', 'SYNACK'),
  INPUT_ONLY[1]!,
  INPUT_ONLY[2]!,
  INPUT_ONLY[3]!,
];

const ROW_SYN = 0;
const ROW_FIN = 1;
const ROW_ACK = 2;
const ROW_RST = 3;

/** The row a segment selects, by IPVS's priority RST > SYN > FIN > ACK; -1 when none of them is set. */
function flagRow(tcpFlags: number): number {
  if (tcpFlags & TCP_RST) return ROW_RST;
  if (tcpFlags & TCP_SYN) return ROW_SYN;
  if (tcpFlags & TCP_FIN) return ROW_FIN;
  if (tcpFlags & TCP_ACK) return ROW_ACK;
  return -1;
}

/**
 * The state after a segment with `tcpFlags` crosses the director in `direction`; `secure` selects
 * secure_tcp's table.
 */
export function nextTcpState(state: number, direction: Direction, tcpFlags: number, secure = false): number {
  const flag = flagRow(tcpFlags);
  // A segment without RST, SYN, FIN or ACK is nonsense: IPVS closes the entry.
  if (flag < 0) return S_CLOSE;
  const table = secure
    ? direction === 'in'
      ? INPUT_DOS
      : direction === 'out'
        ? OUTPUT_DOS
        : INPUT_ONLY_DOS
    : direction === 'in'
      ? INPUT
      : direction === 'out'
        ? OUTPUT
        : INPUT_ONLY;
  return table[flag]![state]!;
}

/** A TCP connection that never completed its handshake: what a SYN flood leaves behind. */
export function isHalfOpen(state: number): boolean {
  return state === S_NONE || state === S_SYN_RECV || state === S_SYNACK;
}
