// The dashboard's token: its file, the comparison, and the limit on wrong tokens.

import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FailureLimiter, parseTokenFile, readTokenFile, Token } from '../../src/http/auth.js';

const SECRET = 'correct-horse-battery-staple';

test('a token matches only `Bearer` and itself', () => {
  const token = new Token(SECRET);
  assert.ok(token.matches(`Bearer ${SECRET}`));
  assert.ok(token.matches(`bearer ${SECRET}`));
  for (const header of [
    undefined,
    '',
    'Bearer',
    `Bearer ${SECRET}x`,
    `Bearer ${SECRET.slice(0, -1)}`,
    `Basic ${SECRET}`,
    SECRET,
    `Bearer ${SECRET} extra`,
  ]) {
    assert.ok(!token.matches(header), String(header));
  }
});

test('the token file: its first line, long enough, printable', () => {
  assert.equal(parseTokenFile(`${SECRET}\n`, 'f'), SECRET);
  assert.equal(parseTokenFile(`  ${SECRET}\r\nignored`, 'f'), SECRET);
  assert.throws(
    () => parseTokenFile('short\n', 'f'),
    /f: the token \(first line\) must be at least 16 characters/,
  );
  assert.throws(() => parseTokenFile('\nsecond-line-token-here', 'f'), /at least 16/);
  assert.throws(() => parseTokenFile('with a space in it here', 'f'), /printable ASCII without spaces/);
});

test('a token file others may read is taken with a warning; a missing one is an error', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lvd12-token-'));
  try {
    const file = join(dir, 'token');
    await writeFile(file, `${SECRET}\n`, { mode: 0o600 });
    const own = await readTokenFile(file);
    assert.equal(own.warning, null);
    assert.ok(own.token.matches(`Bearer ${SECRET}`));
    await chmod(file, 0o644);
    assert.match((await readTokenFile(file)).warning!, /may be read by others \(mode 644\): chmod 600 it/);
    await assert.rejects(readTokenFile(join(dir, 'none')), { code: 'ENOENT' });
  } finally {
    await rm(dir, { recursive: true });
  }
});

test('wrong tokens: an address is blocked after maxFailures within the window, for blockMs', () => {
  const limiter = new FailureLimiter({ maxFailures: 3, windowMs: 1000, blockMs: 5000, maxTracked: 10 });
  assert.equal(limiter.blockedFor('a', 0), 0);
  assert.equal(limiter.fail('a', 0), false);
  assert.equal(limiter.fail('a', 10), false);
  assert.equal(limiter.blockedFor('a', 10), 0);
  assert.equal(limiter.fail('a', 20), true);
  assert.equal(limiter.blockedFor('a', 20), 5000);
  assert.equal(limiter.blockedFor('b', 20), 0, 'others are not blocked');
  assert.equal(limiter.blockedFor('a', 5019), 1);
  assert.equal(limiter.blockedFor('a', 5020), 0);
  // Failures spread wider than the window never block.
  for (let t = 10_000; t < 20_000; t += 600) assert.equal(limiter.fail('c', t), false);
});

test('the limiter remembers at most maxTracked addresses, forgetting the longest quiet', () => {
  const limiter = new FailureLimiter({ maxFailures: 2, windowMs: 1000, blockMs: 5000, maxTracked: 4 });
  limiter.fail('x', 0);
  limiter.fail('x', 1); // blocked
  for (let i = 0; i < 100; i++) limiter.fail(`spray-${i}`, 2);
  assert.equal(limiter.tracked, 4);
  assert.equal(limiter.blockedFor('x', 3), 0, 'pushed out by 100 others');
  assert.equal(limiter.blockedFor('spray-99', 3), 0);
});
