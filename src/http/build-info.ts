// Which lvsd is running, for lvsd_build_info: the version from the package.json this file was
// installed with (dist/src/http/ is three levels below it), and Node's.

import { readFile } from 'node:fs/promises';
import type { BuildInfo } from './metrics.js';

export async function readBuildInfo(): Promise<BuildInfo> {
  const text = await readFile(new URL('../../../package.json', import.meta.url), 'utf8');
  const { version } = JSON.parse(text) as { version?: unknown };
  return { version: typeof version === 'string' ? version : 'unknown', nodeVersion: process.version };
}
