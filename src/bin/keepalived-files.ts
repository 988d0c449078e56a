// The keepalived.conf reader's file system: reading files and expanding include globs as glob(3)
// with GLOB_BRACE does (sorted matches per brace alternative, `*` never matching a leading dot).
// Written here rather than taken from npm: Node 20 has no fs.glob, and the npm globbers follow
// bash/minimatch rules (`**`, dot options) that differ from keepalived's glob(3).

import { readdirSync, readFileSync, statSync } from 'node:fs';
import type { ConfigFiles } from '../keepalived/files.js';
import { LEX_LIMITS } from '../keepalived/lexer.js';

const MAX_MATCHES = LEX_LIMITS.files;

/** `a{b,c}d` -> `abd`, `acd` (nested braces too); a lone brace stays literal. */
export function expandBraces(pattern: string): string[] {
  let depth = 0;
  let open = -1;
  const commas: number[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') i++;
    else if (c === '{') {
      if (depth++ === 0) open = i;
    } else if (c === ',' && depth === 1) commas.push(i);
    else if (c === '}' && depth > 0 && --depth === 0) {
      const head = pattern.slice(0, open);
      const tail = pattern.slice(i + 1);
      const cuts = [open, ...commas, i];
      const out: string[] = [];
      for (let k = 0; k + 1 < cuts.length; k++) {
        out.push(...expandBraces(head + pattern.slice(cuts[k]! + 1, cuts[k + 1]) + tail));
      }
      return out;
    }
  }
  return [pattern];
}

function hasMagic(segment: string): boolean {
  return /[*?[]/.test(segment);
}

function segmentRegex(segment: string): RegExp {
  let re = '';
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i]!;
    if (c === '\\' && i + 1 < segment.length) re += escapeRe(segment[++i]!);
    else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const close = segment.indexOf(']', i + 2);
      if (close < 0) {
        re += '\\[';
        continue;
      }
      let body = segment.slice(i + 1, close);
      if (body.startsWith('!')) body = '^' + body.slice(1);
      re += `[${body.replace(/\\/g, '\\\\')}]`;
      i = close;
    } else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`, 's');
}

function escapeRe(c: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(c) ? `\\${c}` : c;
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

function globOne(pattern: string): string[] {
  const segments = pattern.split('/').filter((s) => s !== '');
  let paths = [''];
  for (const segment of segments) {
    const next: string[] = [];
    for (const dir of paths) {
      if (!hasMagic(segment)) {
        next.push(`${dir}/${segment.replace(/\\(.)/g, '$1')}`);
        continue;
      }
      let names: string[];
      try {
        names = readdirSync(dir === '' ? '/' : dir);
      } catch {
        continue;
      }
      const re = segmentRegex(segment);
      const dots = segment.startsWith('.');
      for (const name of names.sort()) {
        if ((dots || !name.startsWith('.')) && re.test(name)) next.push(`${dir}/${name}`);
      }
      if (next.length > MAX_MATCHES) break;
    }
    paths = next;
  }
  return paths.filter(exists);
}

export const fileSystemConfigFiles: ConfigFiles = {
  read(path) {
    try {
      const st = statSync(path);
      if (!st.isFile()) return { error: 'not a regular file' };
      if (st.size > LEX_LIMITS.fileBytes) return { error: `larger than ${LEX_LIMITS.fileBytes} bytes` };
      return new Uint8Array(readFileSync(path));
    } catch (err) {
      return { error: (err as NodeJS.ErrnoException).code ?? (err as Error).message };
    }
  },
  glob(pattern) {
    const out: string[] = [];
    for (const alternative of expandBraces(pattern)) {
      for (const path of globOne(alternative)) if (!out.includes(path)) out.push(path);
      if (out.length > MAX_MATCHES) break;
    }
    return out.slice(0, MAX_MATCHES + 1);
  },
};
