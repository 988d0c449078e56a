// Reading a keepalived.conf given as text, for the parser's tests.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DIST } from '../cli/daemon-harness.js';
import type { KeepalivedConfig } from '../../src/keepalived/model.js';
import { readKeepalivedConf, type ReadResult } from '../../src/keepalived/read.js';
import { fakeFiles } from './fake-files.js';

export const MAIN = '/etc/keepalived/keepalived.conf';

/** Real configurations, each citing its source on its first line. */
export const FIXTURES = join(DIST, '../test/keepalived/fixtures');

export function read(text: string, others: Record<string, string> = {}): ReadResult {
  return readKeepalivedConf(fakeFiles({ [MAIN]: text, ...others }), MAIN, { configId: 'lb1' });
}

export function parse(text: string, others: Record<string, string> = {}): KeepalivedConfig {
  const result = read(text, others);
  if (!result.ok) assert.fail(`unexpected error: ${result.error.line}: ${result.error.message}`);
  return result.config;
}

/** The error as `LINE: reason` (in the main file) or `FILE:LINE: reason`. */
export function parseError(text: string, others: Record<string, string> = {}): string {
  const result = read(text, others);
  if (result.ok) assert.fail('no error');
  const { file, line, message } = result.error;
  return file === MAIN ? `${line}: ${message}` : `${file}:${line}: ${message}`;
}

/** The warnings as `LINE: message`. */
export function warnings(text: string): string[] {
  return parse(text).warnings.map((w) => `${w.line}: ${w.message}`);
}

/** A TCP virtual server with everything set, so that only what a test adds or removes warns. */
export function quietVs(body: string, rs = 'real_server 192.168.1.10 8080 {\n}\n'): string {
  return `virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo rr\n lb_kind NAT\n${body}\n${rs}}\n`;
}
