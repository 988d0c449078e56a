// Reading a keepalived.conf into lvsd's model: lexer, tree, keywords, keepalived's corrections.
// All or nothing: a configuration with an error gives the first error and no model.

import {
  ConfigError,
  formatDiagnostic,
  lexKeepalivedConf,
  type Diagnostic,
  type LexOptions,
} from './lexer.js';
import type { ConfigFiles } from './files.js';
import type { KeepalivedConfig } from './model.js';
import { parseTree } from './parser.js';
import { resolveConfig } from './resolve.js';
import { buildTree } from './tree.js';

export type ReadResult =
  { ok: true; config: KeepalivedConfig } | { ok: false; error: Diagnostic; warnings: Diagnostic[] };

/**
 * Reads the keepalived.conf at `path` (absolute) and what it includes. Never throws on bad input:
 * an error comes back as `FILE:LINE: reason` data, with the warnings seen before it.
 */
export function readKeepalivedConf(files: ConfigFiles, path: string, options: LexOptions): ReadResult {
  const warnings: Diagnostic[] = [];
  try {
    const lexed = lexKeepalivedConf(files, path, options, warnings);
    const config = resolveConfig(parseTree(buildTree(lexed.lines), warnings), warnings);
    return { ok: true, config: { ...config, warnings, files: lexed.files } };
  } catch (err) {
    if (err instanceof ConfigError) {
      return { ok: false, error: { file: err.pos.file, line: err.pos.line, message: err.reason }, warnings };
    }
    throw err;
  }
}

export { formatDiagnostic };
