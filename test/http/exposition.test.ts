import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { escapeHelp, escapeLabelValue, formatValue, renderExposition } from '../../src/http/exposition.js';
import { promtoolCheck, PROMTOOL_SKIP } from './helpers.js';

/** The text format's reading of an escaped label value (what Prometheus's parser does). */
function unescapeLabelValue(text: string): string {
  return text.replace(/\\(.)/gs, (_, c: string) => (c === 'n' ? '\n' : c));
}

test('label values escape backslash, double quote and line feed, and nothing else', () => {
  assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  assert.equal(escapeLabelValue('tab\there, unicode é, {}=,'), 'tab\there, unicode é, {}=,');
  fc.assert(
    fc.property(fc.string({ unit: 'binary' }), (value) => {
      const escaped = escapeLabelValue(value);
      assert.ok(!escaped.includes('\n'));
      assert.ok(!/(^|[^\\])(\\\\)*"/.test(escaped), 'every " is escaped');
      assert.equal(unescapeLabelValue(escaped), value);
    }),
  );
});

test('HELP text escapes backslash and line feed only', () => {
  assert.equal(escapeHelp('say "hi"\\\nbye'), 'say "hi"\\\\\\nbye');
});

test('counters print as exact integers in plain digits, gauges as Go parses floats', () => {
  assert.equal(formatValue(2 ** 53 + 2, 'counter'), '9007199254740994');
  assert.equal(formatValue(1e21, 'counter'), '1000000000000000000000');
  assert.equal(formatValue(2n ** 64n - 1n, 'counter'), '18446744073709551615');
  assert.equal(formatValue(0, 'counter'), '0');
  assert.equal(formatValue(1e21, 'gauge'), '1000000000000000000000');
  assert.equal(formatValue(0.25, 'gauge'), '0.25');
  assert.equal(formatValue(NaN, 'gauge'), 'NaN');
  assert.equal(formatValue(Infinity, 'gauge'), '+Inf');
  assert.equal(formatValue(-Infinity, 'gauge'), '-Inf');
});

test('families print HELP, TYPE and their samples in order; an empty family is left out', () => {
  const text = renderExposition([
    { name: 'x_total', type: 'counter', help: 'X.', samples: [{ labels: [['a', '"q"']], value: 3 }] },
    { name: 'empty', type: 'gauge', help: 'Nothing.', samples: [] },
    {
      name: 'y',
      type: 'gauge',
      help: 'Y.',
      samples: [
        { labels: [], value: 1.5 },
        { labels: [['b', 'x\ny']], value: 2 },
      ],
    },
  ]);
  assert.equal(
    text,
    '# HELP x_total X.\n# TYPE x_total counter\nx_total{a="\\"q\\""} 3\n' +
      '# HELP y Y.\n# TYPE y gauge\ny 1.5\ny{b="x\\ny"} 2\n',
  );
  assert.equal(renderExposition([]), '');
});

test('promtool reads escaped label values and huge counters', { skip: PROMTOOL_SKIP }, () => {
  const text = renderExposition([
    {
      name: 'lvsd_test_total',
      type: 'counter',
      help: 'A test with a \\ and a\nnewline.',
      samples: [
        { labels: [['v', 'back\\slash "quoted"\nnewline']], value: 2n ** 64n - 1n },
        { labels: [['v', '']], value: 1e21 },
      ],
    },
  ]);
  assert.deepEqual(promtoolCheck(text), { status: 0, output: '' });
});
