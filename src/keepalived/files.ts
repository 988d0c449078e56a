// What the keepalived.conf reader needs from the file system, as an interface so that the reader
// stays pure: the daemon passes a real adapter (src/bin/keepalived-files.ts), tests a fake.

/** Reads configuration files and expands include globs. Paths are absolute, POSIX. */
export interface ConfigFiles {
  /** The file's bytes, or why it cannot be read. */
  read(path: string): Uint8Array | { error: string };
  /** Absolute paths matching an absolute glob(3) pattern (`*`, `?`, `[...]`, `{a,b}`), sorted; [] if none. */
  glob(pattern: string): string[];
}

export function isAbsolute(path: string): boolean {
  return path.startsWith('/');
}

/** The directory part of an absolute path ("/" for a file at the root). */
export function dirname(path: string): string {
  const cut = path.replace(/\/+$/, '').lastIndexOf('/');
  return cut <= 0 ? '/' : path.slice(0, cut);
}

/** `relative` resolved against the directory `base`, with `.` and `..` folded. */
export function resolvePath(base: string, relative: string): string {
  const parts: string[] = [];
  const joined = isAbsolute(relative) ? relative : `${base}/${relative}`;
  for (const part of joined.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return '/' + parts.join('/');
}
