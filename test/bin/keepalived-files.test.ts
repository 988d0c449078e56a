// The file system adapter of the keepalived.conf reader: glob(3)-like include expansion (sorted
// per brace alternative, no leading dots for `*`), and reading with its refusals.

import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { expandBraces, fileSystemConfigFiles } from '../../src/bin/keepalived-files.js';

const dir = mkdtempSync(join(tmpdir(), 'lvsd-kafiles-'));
after(() => rmSync(dir, { recursive: true, force: true }));
mkdirSync(join(dir, 'conf.d'));
mkdirSync(join(dir, 'other'));
for (const name of ['b.conf', 'a.conf', '.hidden.conf', 'c.txt'])
  writeFileSync(join(dir, 'conf.d', name), `# ${name}\n`);
writeFileSync(join(dir, 'other', 'x.conf'), 'x\n');

describe('include globs', () => {
  test('* matches sorted, never a leading dot', () => {
    assert.deepEqual(fileSystemConfigFiles.glob(join(dir, 'conf.d/*.conf')), [
      join(dir, 'conf.d/a.conf'),
      join(dir, 'conf.d/b.conf'),
    ]);
    assert.deepEqual(fileSystemConfigFiles.glob(join(dir, 'conf.d/.*.conf')), [
      join(dir, 'conf.d/.hidden.conf'),
    ]);
  });

  test('? and [...] and braces, in the order of the alternatives', () => {
    assert.deepEqual(fileSystemConfigFiles.glob(join(dir, 'conf.d/[ab].conf')), [
      join(dir, 'conf.d/a.conf'),
      join(dir, 'conf.d/b.conf'),
    ]);
    assert.deepEqual(fileSystemConfigFiles.glob(join(dir, '{other,conf.d}/?.conf')), [
      join(dir, 'other/x.conf'),
      join(dir, 'conf.d/a.conf'),
      join(dir, 'conf.d/b.conf'),
    ]);
    assert.deepEqual(expandBraces('a{b,c{d,e}}f'), ['abf', 'acdf', 'acef']);
    assert.deepEqual(expandBraces('a{b}c'), ['abc']);
  });

  test('a plain path matches only if it exists; nothing matches in a missing directory', () => {
    assert.deepEqual(fileSystemConfigFiles.glob(join(dir, 'conf.d/a.conf')), [join(dir, 'conf.d/a.conf')]);
    assert.deepEqual(fileSystemConfigFiles.glob(join(dir, 'conf.d/none.conf')), []);
    assert.deepEqual(fileSystemConfigFiles.glob(join(dir, 'nowhere/*.conf')), []);
  });
});

describe('reading', () => {
  test('a file comes back as its bytes', () => {
    assert.deepEqual(fileSystemConfigFiles.read(join(dir, 'other/x.conf')), new Uint8Array([0x78, 0x0a]));
  });

  test('a missing file, a directory and an unreadable file are reasons, not throws', () => {
    assert.deepEqual(fileSystemConfigFiles.read(join(dir, 'none')), { error: 'ENOENT' });
    assert.deepEqual(fileSystemConfigFiles.read(join(dir, 'conf.d')), { error: 'not a regular file' });
    if (process.getuid?.() !== 0) {
      const locked = join(dir, 'locked.conf');
      writeFileSync(locked, 'x');
      chmodSync(locked, 0);
      assert.deepEqual(fileSystemConfigFiles.read(locked), { error: 'EACCES' });
    }
  });
});
