// keepalived.conf's reading rules: comments, quoting and escapes, braces, include, parameters,
// conditional lines, and the bounds that keep bad input from crashing or hanging the reader.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ConfigError,
  decomment,
  LEX_LIMITS,
  lexKeepalivedConf,
  splitBraces,
  splitQuoted,
  splitWords,
} from '../../src/keepalived/lexer.js';
import { fakeFiles } from './fake-files.js';

const pos = { file: '/etc/keepalived/keepalived.conf', line: 1 };
const MAIN = '/etc/keepalived/keepalived.conf';

/** The keyword lines of a configuration, as words joined by one space. */
function lex(files: Record<string, string | Uint8Array>, configId = 'lb1'): string[] {
  return lexKeepalivedConf(fakeFiles(files), MAIN, { configId }).lines.map((l) => l.words.join(' '));
}

function lexError(files: Record<string, string | Uint8Array>): string {
  try {
    lexKeepalivedConf(fakeFiles(files), MAIN, { configId: 'lb1' });
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail('no error');
}

describe('comments', () => {
  test('# and ! start a comment anywhere outside double quotes', () => {
    assert.equal(decomment('  weight 2 # two', pos).text, 'weight 2');
    assert.equal(decomment('weight 2 ! two', pos).text, 'weight 2');
    assert.equal(decomment('path "/a#b!c" # real comment', pos).text, 'path "/a#b!c"');
    assert.equal(decomment('! whole line', pos).text, '');
  });

  test('\\# and \\! give the characters themselves', () => {
    assert.equal(decomment('path /a\\#b\\!c', pos).text, 'path /a#b!c');
  });

  test('an unterminated double quote is an error at its line', () => {
    assert.throws(() => decomment('path "/a', pos), /Unterminated quote/);
  });
});

describe('braces', () => {
  test('every { and } outside quotes is a line of its own', () => {
    assert.deepEqual(splitBraces('real_server 1.2.3.4 80{'), ['real_server 1.2.3.4 80', '{']);
    assert.deepEqual(splitBraces('} real_server 1.2.3.5 80 {'), ['}', 'real_server 1.2.3.5 80', '{']);
    assert.deepEqual(splitBraces('url { path / }'), ['url', '{', 'path /', '}']);
    assert.deepEqual(splitBraces('path "/{x}"'), ['path "/{x}"']);
  });

  test('blocks on one line read as on several', () => {
    const oneLine = lex({ [MAIN]: 'virtual_server 10.0.0.1 80 { real_server 10.0.1.1 80 { weight 2 } }\n' });
    const spread = lex({
      [MAIN]: 'virtual_server 10.0.0.1 80\n{\n real_server 10.0.1.1 80 {\n weight 2\n }\n}\n',
    });
    assert.deepEqual(oneLine, spread);
    assert.deepEqual(oneLine, [
      'virtual_server 10.0.0.1 80',
      '{',
      'real_server 10.0.1.1 80',
      '{',
      'weight 2',
      '}',
      '}',
    ]);
  });
});

describe('quoting and escapes', () => {
  test('plain keywords: "..." is one word without its quotes; single quotes are characters', () => {
    assert.deepEqual(splitWords('virtualhost "a b"  x', pos), ['virtualhost', 'a b', 'x']);
    assert.deepEqual(splitWords("path 'a b'", pos), ['path', "'a", "b'"]);
    assert.throws(() => splitWords('virtualhost "a b', pos), /Unmatched quote/);
  });

  test('script keywords may hold a lone double quote', () => {
    assert.deepEqual(splitWords('misc_path "/bin/x', pos), ['misc_path', '/bin/x']);
  });

  test('scripts: both quotes group, escapes are shell-like', () => {
    assert.deepEqual(splitQuoted(`/bin/check 'a b' "c d"e`, true, pos), ['/bin/check', 'a b', 'c de']);
    assert.deepEqual(splitQuoted('x\\ty \\x41\\101 \\\\ \\"q\\"', true, pos), ['x\ty', 'AA', '\\', '"q"']);
    assert.deepEqual(splitQuoted('a\\ b', false, pos), ['a\\ b']);
    assert.throws(() => splitQuoted("'a b", true, pos), /missing terminating '/);
    assert.throws(() => splitQuoted('a\\', true, pos), /Missing escape char/);
  });
});

describe('include', () => {
  test('relative to the including file, globs in order, nested', () => {
    const lines = lex({
      [MAIN]: 'include conf.d/*.conf\nlast\n',
      '/etc/keepalived/conf.d/b.conf': 'bee\n',
      '/etc/keepalived/conf.d/a.conf': 'include ../shared/x.inc\nay\n',
      '/etc/keepalived/shared/x.inc': 'ex\n',
    });
    assert.deepEqual(lines, ['ex', 'ay', 'bee', 'last']);
  });

  test('include after parameters and conditional lines, and after a brace, as keepalived reads it', () => {
    const lines = lex({
      [MAIN]:
        '$DIR=conf.d\ninclude ${DIR}/a.conf\n@lb1 include b.conf\n@lb2 include c.conf\nx { include d.conf\n}\n',
      '/etc/keepalived/conf.d/a.conf': 'ay\n',
      '/etc/keepalived/b.conf': 'bee\n',
      '/etc/keepalived/c.conf': 'sea\n',
      '/etc/keepalived/d.conf': 'dee\n',
    });
    assert.deepEqual(lines, ['ay', 'bee', 'x', '{', 'dee', '}']);
  });

  test('lines keep their own file and line number', () => {
    const result = lexKeepalivedConf(
      fakeFiles({ [MAIN]: '\n\ninclude other.conf\n', '/etc/keepalived/other.conf': '\nweight 1\n' }),
      MAIN,
      { configId: 'x' },
    );
    assert.deepEqual(
      result.lines.map((l) => [l.file, l.line]),
      [['/etc/keepalived/other.conf', 2]],
    );
    assert.deepEqual(result.files, [MAIN, '/etc/keepalived/other.conf']);
  });

  test('a plain include that matches nothing warns; includer etc. refuse', () => {
    const result = lexKeepalivedConf(fakeFiles({ [MAIN]: 'include none/*.conf\n' }), MAIN, { configId: 'x' });
    assert.deepEqual(
      result.warnings.map((w) => `${w.line}: ${w.message}`),
      ["1: No config files matched 'none/*.conf'."],
    );
    assert.match(
      lexError({ [MAIN]: '\nincluder none.conf\n' }),
      /keepalived\.conf:2: No config files matched 'none\.conf'/,
    );
  });

  test('an include loop is an error naming the chain', () => {
    const message = lexError({
      [MAIN]: 'include a.conf\n',
      '/etc/keepalived/a.conf': '\ninclude keepalived.conf\n',
    });
    assert.equal(
      message,
      '/etc/keepalived/a.conf:2: include loop: /etc/keepalived/keepalived.conf -> /etc/keepalived/a.conf -> /etc/keepalived/keepalived.conf',
    );
  });

  test('a file that includes itself is a loop too', () => {
    assert.match(lexError({ [MAIN]: 'include keepalived.conf\n' }), /keepalived\.conf:1: include loop/);
  });

  test('the main file missing is an error', () => {
    assert.equal(lexError({}), `${MAIN}: cannot read ${MAIN}: ENOENT`);
  });
});

describe('parameters', () => {
  test('$NAME and ${NAME} substitute, recursively; an undefined one stays as written', () => {
    const lines = lex({
      [MAIN]: '$PORT=80\n$VIP=10.0.0.1 $PORT\nvirtual_server $VIP\nweight ${PORT}0 $UNDEFINED\n',
    });
    assert.deepEqual(lines, ['virtual_server 10.0.0.1 80', 'weight 800 $UNDEFINED']);
  });

  test('a multi-line definition expands to lines of their own', () => {
    const lines = lex({
      [MAIN]: '$CHECK=TCP_CHECK { \\\n  connect_timeout 3 \\\n}\nreal_server 1.1.1.1 80 {\n$CHECK\n}\n',
    });
    assert.deepEqual(lines, ['real_server 1.1.1.1 80', '{', 'TCP_CHECK', '{', 'connect_timeout 3', '}', '}']);
  });

  test('${_HASH} and ${_BANG} give the comment characters; ${_PWD} the file directory', () => {
    assert.deepEqual(lex({ [MAIN]: 'path /a${_HASH}b${_BANG}\ndir ${_PWD}\n' }), [
      'path /a#b!',
      'dir /etc/keepalived',
    ]);
  });

  test('${_INSTANCE} is the config id', () => {
    assert.deepEqual(lex({ [MAIN]: 'name ${_INSTANCE}\n' }, 'lb7'), ['name lb7']);
  });

  test('${_RANDOM} and ${_ENV} are refused: a reload must read the same', () => {
    assert.match(lexError({ [MAIN]: 'weight ${_RANDOM 1 5}\n' }), /:1: \$\{_RANDOM\} is not supported/);
    assert.match(lexError({ [MAIN]: 'weight ${_ENV HOME}\n' }), /:1: \$\{_ENV\} is not supported/);
  });

  test('a multi-line definition that ends with itself is stopped too', () => {
    assert.match(lexError({ [MAIN]: '$A=x \\\n$A\nw $A\n' }), /:3: more than 1000 parameter substitutions/);
  });

  test('a definition that uses itself is stopped, not looped on', () => {
    assert.match(
      lexError({ [MAIN]: '$A=$A x\nweight $A\n' }),
      /:2: (more than \d+ parameter substitutions|parameter substitution makes the line longer)/,
    );
    assert.match(lexError({ [MAIN]: '$A=$A\nweight $A\n' }), /:2: more than 1000 parameter substitutions/);
  });
});

describe('~SEQ', () => {
  test('end only, start and end, start step end, hexadecimal', () => {
    assert.deepEqual(lex({ [MAIN]: '~SEQ(i, 3) w $i\n' }), ['w 1', 'w 2', 'w 3']);
    assert.deepEqual(lex({ [MAIN]: '~SEQ(i, 5, 3) w $i\n' }), ['w 5', 'w 4', 'w 3']);
    assert.deepEqual(lex({ [MAIN]: '~SEQ(i, 1, 4, 9) w $i\n' }), ['w 1', 'w 5', 'w 9']);
    assert.deepEqual(lex({ [MAIN]: '~SEQx(i, 9, 11) w $i\n' }), ['w 9', 'w a', 'w b']);
  });

  test('parameters as bounds, nested sequences, blocks in the repeated text', () => {
    const lines = lex({
      [MAIN]: '$N=2\n~SEQ(a, $N) ~SEQ(b, 1, 2) real_server 10.0.${a}.$b 80 { weight $b }\n',
    });
    assert.deepEqual(
      lines,
      ['1.1', '1.2', '2.1', '2.2'].flatMap((ab) => [
        `real_server 10.0.${ab} 80`,
        '{',
        `weight ${ab.slice(2)}`,
        '}',
      ]),
    );
  });

  test('a long sequence may substitute in each of its lines', () => {
    const lines = lex({ [MAIN]: '~SEQ(i, 1, 3000) real_server 10.0.${i} 80\n' });
    assert.deepEqual([lines.length, lines[2999]], [3000, 'real_server 10.0.3000 80']);
  });

  test('bad sequences are errors with keepalived texts', () => {
    assert.match(lexError({ [MAIN]: '~SEQ(i) w\n' }), /:1: Invalid ~SEQ definition/);
    assert.match(lexError({ [MAIN]: '~SEQ(i, 1, -1, 5) w\n' }), /:1: Invalid ~SEQ values/);
    assert.match(lexError({ [MAIN]: '~SEQx(i, -2, 2) w\n' }), /:1: ~SEQx is only valid for positive numbers/);
  });
});

describe('conditional lines', () => {
  test('@ID keeps a line for that config id only; @^ID for every other', () => {
    const text = '@lb1 weight 1\n@lb2 weight 2\n@^lb1 weight 3\n@^lb2 weight 4\n@lb1\n';
    assert.deepEqual(lex({ [MAIN]: text }, 'lb1'), ['weight 1', 'weight 4']);
    assert.deepEqual(lex({ [MAIN]: text }, 'lb2'), ['weight 2', 'weight 3']);
  });
});

describe('refusals and bounds', () => {
  test('~LST is refused clearly', () => {
    assert.match(lexError({ [MAIN]: '~LST(i,a,b) x $i\n' }), /:1: ~LST is not supported by lvsd yet/);
  });

  test('nested ~SEQ that multiply past the bound are stopped, even making no lines', () => {
    assert.match(
      lexError({ [MAIN]: '~SEQ(a,100) '.repeat(5) + '\n' }),
      /:1: ~SEQ repeats lines more than 1000000 times/,
    );
  });

  test('~SEQ nested too deep is an error, not a stack overflow', () => {
    assert.match(lexError({ [MAIN]: '~SEQ(a,1) '.repeat(5000) + 'w\n' }), /:1: ~SEQ nested deeper than 32/);
  });

  test('a ~SEQ too long is refused before it runs', () => {
    assert.match(
      lexError({ [MAIN]: '~SEQ(i,1,100000000) weight $i\n' }),
      /:1: ~SEQ of more than 65536 values/,
    );
  });

  test('binary data is an error at its line', () => {
    const junk = new Uint8Array([0x67, 0x6c, 0x0a, 0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x00, 0x00]);
    assert.match(lexError({ [MAIN]: junk }), /keepalived\.conf:2: binary data \(byte 0x02\)/);
  });

  test('a file over the size bound is refused without being split into lines', () => {
    const huge = new Uint8Array(LEX_LIMITS.fileBytes + 1).fill(0x20);
    assert.match(lexError({ [MAIN]: huge }), /larger than 16777216 bytes/);
  });

  test('a line over the length bound is refused', () => {
    assert.match(lexError({ [MAIN]: `\n${'x'.repeat(LEX_LIMITS.lineChars + 1)}\n` }), /:2: line longer than/);
  });

  test('includes nest only so deep', () => {
    const files: Record<string, string> = { [MAIN]: 'include f0.conf\n' };
    for (let i = 0; i < 40; i++) files[`/etc/keepalived/f${i}.conf`] = `include f${i + 1}.conf\n`;
    assert.match(lexError(files), /includes nested deeper than 32/);
  });
});
