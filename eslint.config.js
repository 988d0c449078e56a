import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const LAYERS = [
  'core',
  'ipvsadm',
  'keepalived',
  'health',
  'sync',
  'dataplane',
  'http',
  'control',
  'cli',
  'bin',
  'demo',
  'lab',
];
const IO_MODULES = ['node:*', 'fs', 'net', 'dgram', 'child_process', 'worker_threads', 'os', 'koffi'];

/**
 * A layer's lint rules: it may import only the layers (or single modules) named in `above`; a pure
 * layer also does no I/O and reads no clock (adapters inject what it needs).
 */
function layer(dir, { pure = false, above }) {
  const own = dir.slice('src/'.length);
  const forbidden = LAYERS.filter((name) => name !== own && !above.includes(name)).flatMap((name) => [
    `../${name}/*`,
    `../../${name}/*`,
    ...above.filter((a) => a.startsWith(`${name}/`)).flatMap((a) => [`!../${a}`, `!../../${a}`]),
  ]);
  const patterns = [
    { group: forbidden, message: `${dir} may import only from: ${above.join(', ') || 'itself'}` },
  ];
  if (pure) patterns.push({ group: IO_MODULES, message: `${dir} is pure: do I/O in an adapter` });
  const rules = { 'no-restricted-imports': ['error', { patterns }] };
  if (pure) {
    rules['no-restricted-globals'] = [
      'error',
      'setTimeout',
      'setInterval',
      'setImmediate',
      'process',
      'performance',
    ];
    rules['no-restricted-properties'] = ['error', { object: 'Date', property: 'now' }];
  }
  return { files: [`${dir}/**/*.ts`], rules };
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  // Imports point down the layers (docs/architecture.md): core at the bottom; the ipvsadm and
  // keepalived codecs; the adapters (health, sync, dataplane, http); control; cli; bin.
  layer('src/core', { pure: true, above: [] }),
  layer('src/ipvsadm', { pure: true, above: ['core'] }),
  layer('src/keepalived', { pure: true, above: ['core', 'ipvsadm', 'health/config.js'] }),
  layer('src/health', { above: ['core'] }),
  layer('src/sync', { above: ['core'] }),
  layer('src/dataplane', { above: ['core'] }),
  layer('src/http', { above: ['core', 'ipvsadm', 'control/api.js'] }),
  layer('src/control', { above: ['core', 'ipvsadm', 'keepalived', 'health', 'sync'] }),
  layer('src/cli', {
    above: ['core', 'ipvsadm', 'control/api.js', 'control/protocol.js', 'health/sockets.js'],
  }),
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
