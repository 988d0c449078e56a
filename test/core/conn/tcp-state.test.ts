import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  nextTcpState,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_STATE_NAMES,
  TCP_SYN,
  type Direction,
  type TcpState,
} from '../../../src/core/conn/tcp-state.js';

const code = (name: TcpState) => TCP_STATE_NAMES.indexOf(name);
const next = (from: TcpState, direction: Direction, flags: number) =>
  TCP_STATE_NAMES[nextTcpState(code(from), direction, flags)];

test('a NAT handshake reaches ESTABLISHED: SYN in, SYN-ACK out, ACK in', () => {
  assert.equal(next('NONE', 'in', TCP_SYN), 'SYN_RECV');
  assert.equal(next('SYN_RECV', 'out', TCP_SYN | TCP_ACK), 'SYN_RECV');
  assert.equal(next('SYN_RECV', 'in', TCP_ACK), 'ESTABLISHED');
});

test('closing: client FIN goes to CLOSE_WAIT, server FIN to FIN_WAIT then TIME_WAIT', () => {
  assert.equal(next('ESTABLISHED', 'in', TCP_FIN | TCP_ACK), 'CLOSE_WAIT');
  assert.equal(next('ESTABLISHED', 'out', TCP_FIN | TCP_ACK), 'FIN_WAIT');
  assert.equal(next('FIN_WAIT', 'in', TCP_FIN | TCP_ACK), 'TIME_WAIT');
  assert.equal(next('CLOSE_WAIT', 'out', TCP_FIN | TCP_ACK), 'TIME_WAIT');
  assert.equal(next('LAST_ACK', 'in', TCP_ACK), 'CLOSE');
});

test('flag priority is RST > SYN > FIN > ACK, and no such flag closes', () => {
  assert.equal(next('ESTABLISHED', 'in', TCP_RST | TCP_SYN | TCP_FIN | TCP_ACK), 'CLOSE');
  assert.equal(next('ESTABLISHED', 'out', TCP_SYN | TCP_FIN), 'ESTABLISHED');
  assert.equal(next('SYN_RECV', 'in', TCP_FIN | TCP_ACK), 'TIME_WAIT');
  assert.equal(next('ESTABLISHED', 'in', 0x08 /* PSH only */), 'CLOSE');
});

test('directions differ where IPVS differs: RST and FIN', () => {
  assert.equal(next('SYN_RECV', 'in', TCP_RST), 'SYN_RECV');
  assert.equal(next('SYN_RECV', 'out', TCP_RST), 'CLOSE');
  assert.equal(next('SYNACK', 'in-only', TCP_RST), 'CLOSE');
  assert.equal(next('SYNACK', 'in', TCP_RST), 'SYN_RECV');
  assert.equal(next('ESTABLISHED', 'in-only', TCP_FIN), 'FIN_WAIT');
  assert.equal(next('NONE', 'out', TCP_SYN), 'SYN_SENT');
  assert.equal(next('LISTEN', 'out', TCP_ACK), 'ESTABLISHED');
});

test('every cell of the table is a state', () => {
  for (const direction of ['in', 'out', 'in-only'] as const) {
    for (const flags of [TCP_SYN, TCP_FIN, TCP_ACK, TCP_RST]) {
      for (const from of TCP_STATE_NAMES) {
        assert.ok(TCP_STATE_NAMES.includes(next(from, direction, flags)!), `${direction} ${flags} ${from}`);
      }
    }
  }
});
