// An in-memory file system for the keepalived.conf reader: files by absolute path, globs with
// `*` and `?` over those paths (sorted), as the real adapter gives them.

import type { ConfigFiles } from '../../src/keepalived/files.js';

export function fakeFiles(files: Record<string, string | Uint8Array>): ConfigFiles & { reads: string[] } {
  const reads: string[] = [];
  return {
    reads,
    read(path) {
      reads.push(path);
      const content = files[path];
      if (content === undefined) return { error: 'ENOENT' };
      return typeof content === 'string' ? new TextEncoder().encode(content) : content;
    },
    glob(pattern) {
      const re = new RegExp(
        '^' +
          pattern
            .split('')
            .map((c) => (c === '*' ? '[^/]*' : c === '?' ? '[^/]' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
            .join('') +
          '$',
      );
      return Object.keys(files)
        .filter((p) => re.test(p))
        .sort();
    },
  };
}
