// What the comparison needs from the machine, checked up front: nothing is installed silently.

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { STREAM_MODULE } from './targets.js';

interface Requirement {
  what: string;
  debianPackage: string;
  present: () => boolean;
}

function onPath(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const REQUIREMENTS: Requirement[] = [
  { what: 'ip (network namespaces)', debianPackage: 'iproute2', present: () => onPath('ip') },
  { what: 'taskset', debianPackage: 'util-linux', present: () => onPath('taskset') },
  { what: 'nginx (real servers)', debianPackage: 'nginx', present: () => onPath('nginx') },
  {
    what: 'nginx stream module',
    debianPackage: 'libnginx-mod-stream',
    present: () => existsSync(STREAM_MODULE),
  },
  { what: 'wrk (load)', debianPackage: 'wrk', present: () => onPath('wrk') },
  { what: 'haproxy', debianPackage: 'haproxy', present: () => onPath('haproxy') },
  { what: 'nft (kernel NAT)', debianPackage: 'nftables', present: () => onPath('nft') },
  { what: 'curl (sanity checks)', debianPackage: 'curl', present: () => onPath('curl') },
];

/** Lines saying what is missing and how to install it; empty when all is there. */
export function missingPrerequisites(): string[] {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push('must run as root (network namespaces, nftables)');
  const missing = REQUIREMENTS.filter((r) => !r.present());
  if (missing.length > 0) {
    problems.push(`missing: ${missing.map((r) => r.what).join(', ')}`);
    problems.push(
      `install with: apt-get install -y ${[...new Set(missing.map((r) => r.debianPackage))].join(' ')}`,
    );
  }
  return problems;
}
