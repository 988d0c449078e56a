// Runs the compiled tests with node's test runner. `unit` runs everything but test/e2e;
// `e2e` runs only test/e2e (root and network namespaces); no argument runs both.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const which = process.argv[2] ?? 'all';
const root = 'dist/test';

function collect(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...collect(path));
    else if (name.endsWith('.test.js')) out.push(path);
  }
  return out;
}

const files = collect(root)
  .filter((f) => {
    const e2e = f.startsWith(join(root, 'e2e'));
    return which === 'all' || (which === 'e2e' ? e2e : !e2e);
  })
  .sort();
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], {
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
