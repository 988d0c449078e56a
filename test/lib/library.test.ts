// docs/library.md's example runs as written against the package's own entry point, and prints
// what the document says it prints.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';

const doc = readFileSync(new URL('../../../docs/library.md', import.meta.url), 'utf8');

test("docs/library.md's example imports from 'lvsd' and prints what the document shows", () => {
  const code = /```js\n([\s\S]*?)```/.exec(doc)![1]!;
  const expected = /```text\n([\s\S]*?)```/.exec(doc)![1]!;
  // Inside the package, so that 'lvsd' resolves through package.json's exports to dist/.
  const script = new URL('./library-example.mjs', import.meta.url);
  writeFileSync(script, code);
  try {
    // ipvsadm pads its columns with trailing blanks, which markdown does not keep.
    const output = execFileSync(process.execPath, [script.pathname], { encoding: 'utf8' });
    assert.equal(output.replace(/ +$/gm, ''), expected);
  } finally {
    rmSync(script);
  }
});
