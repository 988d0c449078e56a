// Runs the compiled tests with node's test runner. `unit` runs everything but test/e2e;
// `e2e` runs only test/e2e (root and network namespaces); no argument runs both. The e2e suites
// run on lvsd's default data plane (packet), then once more on the other one (LVSD_DATAPLANE=tun).
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
const run = (list, env = process.env) =>
  spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...list], { stdio: 'inherit', env })
    .status ?? 1;
let status = run(files);
const e2eFiles = files.filter((f) => f.startsWith(join(root, 'e2e')));
if (e2eFiles.length > 0) {
  const status2 = run(e2eFiles, { ...process.env, LVSD_DATAPLANE: 'tun' });
  status ||= status2;
}
process.exit(status);
