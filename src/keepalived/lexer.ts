// keepalived.conf's reading rules (lib/parser.c's read_line, decomment and the strvec splitters) as
// a pure function: files in, logical lines out. Comments, conditional lines, `$NAME=value`
// parameters, `include` relative to the including file, and braces split off as lines of their own,
// so that the parser sees keepalived's stream of keyword lines. Bounded in size and depth; binary
// data, include loops and runaway parameters are errors, never a crash.

import { dirname, resolvePath, type ConfigFiles } from './files.js';

export interface SourcePos {
  readonly file: string;
  readonly line: number;
}

/** One keyword line of the stream, or a lone `{` / `}`. */
export interface ConfigLine extends SourcePos {
  /** The text after comments, conditionals and parameters: what script keywords re-split. */
  readonly text: string;
  /** keepalived's plain split: whitespace-separated words, `"..."` one word without its quotes. */
  readonly words: readonly string[];
}

export interface Diagnostic extends SourcePos {
  readonly message: string;
}

/** A configuration refused: where and why. Thrown inside the reader, returned by parseKeepalivedConf. */
export class ConfigError extends Error {
  constructor(
    readonly pos: SourcePos,
    readonly reason: string,
  ) {
    super(formatDiagnostic({ ...pos, message: reason }));
    this.name = 'ConfigError';
  }
}

/** `FILE:LINE: message` (`FILE: message` for a file as a whole). */
export function formatDiagnostic(d: Diagnostic): string {
  return d.line > 0 ? `${d.file}:${d.line}: ${d.message}` : `${d.file}: ${d.message}`;
}

export interface LexOptions {
  /** keepalived's config_id: what `@ID` lines match and `${_INSTANCE}` gives (the host name's first part). */
  readonly configId: string;
}

/** Bounds on what one configuration may make the reader do. */
export const LEX_LIMITS = {
  fileBytes: 16 * 1024 * 1024,
  totalBytes: 64 * 1024 * 1024,
  lineChars: 64 * 1024,
  lines: 1_000_000,
  includeDepth: 32,
  files: 4096,
  /** Parameter substitutions in one line (a definition that refers to itself never ends). */
  substitutions: 1000,
  /** Values of one ~SEQ. */
  sequence: 65536,
} as const;

/** Words that take a script: their lines may hold a lone `"` inside single quotes. */
export const SCRIPT_KEYWORDS: ReadonlySet<string> = new Set([
  'misc_path',
  'notify_up',
  'notify_down',
  'quorum_up',
  'quorum_down',
  'notify_fifo_script',
  'lvs_notify_fifo_script',
]);

const BLANKS = ' \t\n\r\v\f';

function isBlank(c: string | undefined): boolean {
  return c !== undefined && c !== '' && BLANKS.includes(c);
}

/**
 * decomment(): leading blanks go, `#` or `!` outside double quotes ends the line, `\#` and `\!`
 * give the characters themselves, a final `\` continues a multi-line definition.
 */
export function decomment(raw: string, pos: SourcePos): { text: string; continued: boolean } {
  const s = raw.replace(/^[ \t]+/, '');
  let out = '';
  let quote = false;
  let continued = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '"') {
      quote = !quote;
      out += c;
    } else if (c === '\\') {
      if (i + 1 >= s.length) {
        continued = true;
        break;
      }
      const next = s[i + 1]!;
      out += !quote && (next === '#' || next === '!') ? next : c + next;
      i++;
    } else if (!quote && (c === '#' || c === '!')) {
      break;
    } else {
      out += c;
    }
  }
  if (quote) throw new ConfigError(pos, `Unterminated quote '${s}'`);
  out = out.replace(/[ \t]+$/, '');
  return { text: continued ? out + '\\' : out, continued };
}

/** Splits off every `{` and `}` outside double quotes as a line of its own (read_line's residue). */
export function splitBraces(text: string): string[] {
  const out: string[] = [];
  let rest = text.trim();
  while (rest !== '') {
    let at = -1;
    for (let j = 0; j < rest.length; j++) {
      const c = rest[j];
      if (c === '"') {
        const close = rest.indexOf('"', j + 1);
        if (close < 0) break;
        j = close;
      } else if (c === '{' || c === '}') {
        at = j;
        break;
      }
    }
    if (at < 0) {
      out.push(rest);
      break;
    }
    if (at > 0) out.push(rest.slice(0, at).trim());
    out.push(rest[at]!);
    rest = rest.slice(at + 1).trim();
  }
  return out.filter((s) => s !== '');
}

/** alloc_strvec_r: blanks separate words; `"..."` is one word without its quotes. */
export function splitWords(text: string, pos: SourcePos): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < text.length) {
    while (isBlank(text[i])) i++;
    if (i >= text.length) break;
    if (text[i] === '"') {
      const close = text.indexOf('"', i + 1);
      if (close < 0) {
        if (words.length > 0 && SCRIPT_KEYWORDS.has(words[0]!)) {
          words.push(text.slice(i + 1));
          break;
        }
        throw new ConfigError(pos, `Unmatched quote: '${text}'`);
      }
      words.push(text.slice(i + 1, close));
      i = close + 1;
    } else {
      let j = i;
      while (j < text.length && !isBlank(text[j]) && text[j] !== '"') j++;
      words.push(text.slice(i, j));
      i = j;
    }
  }
  return words;
}

const SIMPLE_ESCAPES: Record<string, string> = {
  a: '\x07',
  b: '\b',
  E: '\x1b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
};

function isHex(c: string | undefined): boolean {
  return c !== undefined && /^[0-9A-Fa-f]$/.test(c);
}

function isOctal(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '7';
}

/**
 * alloc_strvec_quoted_escaped: words where `'...'` and `"..."` may make up any part of a word, and
 * a backslash escapes the next character (with `escapes`, shell-like: `\n`, `\t`, `\xHH`, `\nnn`, ...;
 * without, the backslash is kept, for a second split to read).
 */
export function splitQuoted(text: string, escapes: boolean, pos: SourcePos): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < text.length) {
    while (isBlank(text[i])) i++;
    if (i >= text.length) break;
    let word = '';
    let quote = '';
    while (i < text.length) {
      const c = text[i]!;
      if (c === '\\') {
        i++;
        if (i >= text.length) throw new ConfigError(pos, `Missing escape char at end: '${text}'`);
        if (!escapes) {
          word += '\\' + text[i++];
          continue;
        }
        const e = text[i]!;
        if (e === 'x' && isHex(text[i + 1])) {
          let value = 0;
          i++;
          for (let n = 0; n < 2 && isHex(text[i]); n++) value = value * 16 + parseInt(text[i++]!, 16);
          word += String.fromCharCode(value);
        } else if (e === 'c' && i + 1 < text.length) {
          word += String.fromCharCode(text.charCodeAt(i + 1) & 0x1f);
          i += 2;
        } else if (isOctal(e)) {
          let value = 0;
          for (let n = 0; n < 3 && isOctal(text[i]); n++) value = value * 8 + Number(text[i++]);
          word += String.fromCharCode(value & 0xff);
        } else {
          word += SIMPLE_ESCAPES[e] ?? e;
          i++;
        }
        continue;
      }
      if (quote) {
        if (c === quote) quote = '';
        else word += c;
        i++;
        continue;
      }
      if (c === '"' || c === "'") {
        quote = c;
        i++;
        continue;
      }
      if (isBlank(c)) break;
      word += c;
      i++;
    }
    if (quote) throw new ConfigError(pos, `String '${text}': missing terminating ${quote}`);
    words.push(word);
  }
  return words;
}

const INCLUDE_RE = /^include([rmwba]?)[ \t]+(.*)$/s;
const DEFINITION_RE = /^\$([A-Za-z_][A-Za-z0-9_]*)=[ \t]*(.*)$/s;
const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*/;

interface Definition {
  /** One line, or several for a definition continued with `\`. */
  lines: string[];
}

const BUILTIN_REFUSED: Record<string, string> = {
  _RANDOM: '${_RANDOM} is not supported by lvsd: a configuration must read the same on every reload',
  _ENV: '${_ENV} is not supported by lvsd: a configuration must not depend on the environment',
};

class Lexer {
  readonly lines: ConfigLine[] = [];
  readonly filesRead: string[] = [];
  private readonly defs = new Map<string, Definition>();
  private readonly reading: string[] = [];
  private totalBytes = 0;
  private sequenceRuns = 0;
  private sequenceDepth = 0;
  /** Substitutions made for the current physical line (its multi-line values and sequences included). */
  private substitutions = 0;

  constructor(
    private readonly files: ConfigFiles,
    private readonly options: LexOptions,
    private readonly warnings: Diagnostic[],
  ) {
    this.defs.set('_HASH', { lines: ['#'] });
    this.defs.set('_BANG', { lines: ['!'] });
    this.defs.set('_INSTANCE', { lines: [options.configId] });
  }

  readFile(path: string, from: SourcePos | null, strict: boolean): void {
    const where = from ?? { file: path, line: 0 };
    if (this.reading.includes(path)) {
      throw new ConfigError(where, `include loop: ${[...this.reading, path].join(' -> ')}`);
    }
    if (this.reading.length >= LEX_LIMITS.includeDepth) {
      throw new ConfigError(where, `includes nested deeper than ${LEX_LIMITS.includeDepth}`);
    }
    if (this.filesRead.length >= LEX_LIMITS.files) {
      throw new ConfigError(where, `more than ${LEX_LIMITS.files} configuration files`);
    }
    const data = this.files.read(path);
    if (!(data instanceof Uint8Array)) {
      if (from && !strict) {
        this.warn(from, `Configuration file '${path}' open problem (${data.error}) - skipping`);
        return;
      }
      throw new ConfigError(where, `cannot read ${path}: ${data.error}`);
    }
    if (data.length > LEX_LIMITS.fileBytes) {
      throw new ConfigError(where, `${path} is larger than ${LEX_LIMITS.fileBytes} bytes`);
    }
    this.totalBytes += data.length;
    if (this.totalBytes > LEX_LIMITS.totalBytes) {
      throw new ConfigError(where, `the configuration is larger than ${LEX_LIMITS.totalBytes} bytes`);
    }
    this.filesRead.push(path);
    this.reading.push(path);
    this.readText(path, decodeText(path, data));
    this.reading.pop();
  }

  private readText(file: string, text: string): void {
    const physical = text.split('\n');
    let open: Definition | null = null;
    for (let i = 0; i < physical.length; i++) {
      const pos = { file, line: i + 1 };
      const raw = physical[i]!.replace(/\r+$/, '');
      if (raw.length > LEX_LIMITS.lineChars) {
        throw new ConfigError(pos, `line longer than ${LEX_LIMITS.lineChars} characters`);
      }
      if (open) {
        // A definition continued with `\`: each line adds one; an empty or unescaped one ends it.
        if (raw === '') {
          open = null;
          continue;
        }
        const { text: part, continued } = decomment(raw, pos);
        const value = continued ? part.slice(0, -1).replace(/[ \t]+$/, '') : part;
        if (value !== '') open.lines.push(value);
        if (!continued) open = null;
        continue;
      }
      if (raw.trim() === '') continue;
      const { text: line } = decomment(raw, pos);
      if (line === '') continue;
      this.substitutions = 0;
      open = this.logicalLine(line, pos);
    }
  }

  /** One decommented line; returns the definition it opens when it ends with `\`. */
  private logicalLine(text: string, pos: SourcePos): Definition | null {
    let line = text;
    if (line.startsWith('@')) {
      const reverse = line[1] === '^';
      const start = reverse ? 2 : 1;
      const blank = line.slice(start).search(/[ \t]/);
      if (blank < 0) return null;
      const matches = line.slice(start, start + blank) === this.options.configId;
      if (matches === reverse) return null;
      line = line.slice(start + blank).replace(/^[ \t]+/, '');
    }
    const def = DEFINITION_RE.exec(line);
    if (def) {
      const [, name, value] = def as unknown as [string, string, string];
      if (value.endsWith('\\')) {
        const first = value.slice(0, -1).replace(/[ \t]+$/, '');
        const opened: Definition = { lines: first === '' ? [] : [first] };
        this.defs.set(name, opened);
        return opened;
      }
      this.defs.set(name, { lines: [value] });
      return null;
    }
    if (line.startsWith('~LST')) {
      throw new ConfigError(pos, '~LST is not supported by lvsd yet: write the lines out, or use ~SEQ');
    }
    if (line.startsWith('~SEQ')) {
      this.sequence(line, pos);
      return null;
    }
    for (const expanded of this.substitute(line, pos)) this.emit(expanded, pos);
    return null;
  }

  /**
   * add_seq: `~SEQ(var, [start,] [step,] end) rest` reads `rest` once per value, with $var set to
   * it (`~SEQx`: in hexadecimal); the values may be parameters, the rest may hold another ~SEQ.
   */
  private sequence(line: string, pos: SourcePos): void {
    const m = /^~SEQ(x?)[ \t]*\([ \t]*([^ \t,)]+)[ \t]*,([^)]*)\)[ \t]*(.*)$/s.exec(line);
    if (!m || m[2]!.startsWith('{')) throw new ConfigError(pos, `Invalid ~SEQ definition '${line}'`);
    const [, hex, name, args, rest] = m as unknown as [string, string, string, string, string];
    const numbers = this.substitute(args, pos)[0]!.split(',').map(readLong);
    if (numbers.some((n) => n === null) || numbers.length > 3) {
      throw new ConfigError(pos, `Invalid ~SEQ definition '${line}'`);
    }
    const [one, two, three] = numbers as number[];
    let start: number, step: number, end: number;
    if (two === undefined) {
      end = one!;
      step = end < 1 ? -1 : 1;
      start = end < 0 ? -1 : 1;
    } else if (three === undefined) {
      [start, end] = [one!, two];
      step = start <= end ? 1 : -1;
    } else {
      [start, step, end] = [one!, two, three];
      if (step === 0 || (start < end && step < 0) || (start > end && step > 0)) {
        throw new ConfigError(pos, `Invalid ~SEQ values '${line}'`);
      }
    }
    if (hex && (start < 0 || end < 0))
      throw new ConfigError(pos, `~SEQx is only valid for positive numbers '${line}'`);
    if (Math.floor((end - start) / step) >= LEX_LIMITS.sequence) {
      throw new ConfigError(pos, `~SEQ of more than ${LEX_LIMITS.sequence} values`);
    }
    if (this.sequenceDepth >= LEX_LIMITS.includeDepth) {
      throw new ConfigError(pos, `~SEQ nested deeper than ${LEX_LIMITS.includeDepth}`);
    }
    this.sequenceDepth++;
    for (let v = start; step > 0 ? v <= end : v >= end; v += step) {
      // Nested sequences multiply: bound them all together, lines or not.
      if (++this.sequenceRuns > LEX_LIMITS.lines) {
        throw new ConfigError(pos, `~SEQ repeats lines more than ${LEX_LIMITS.lines} times`);
      }
      this.defs.set(name, { lines: [hex ? v.toString(16) : String(v)] });
      this.substitutions = 0;
      this.logicalLine(rest, pos);
    }
    this.sequenceDepth--;
  }

  private include(text: string, pos: SourcePos): boolean {
    const m = INCLUDE_RE.exec(text);
    if (!m) return false;
    const strict = m[1] !== '';
    const spec = m[2]!.trim();
    const pattern = resolvePath(dirname(pos.file), spec);
    const matches = this.files.glob(pattern);
    if (matches.length === 0) {
      if (strict) throw new ConfigError(pos, `No config files matched '${spec}'`);
      this.warn(pos, `No config files matched '${spec}'.`);
    }
    for (const path of matches) this.readFile(path, pos, strict);
    return true;
  }

  /** The line with every `$NAME` / `${NAME}` replaced, recursively; a multi-line value adds lines. */
  private substitute(text: string, pos: SourcePos): string[] {
    let line = text;
    const extra: string[] = [];
    let at = line.indexOf('$');
    while (at >= 0 && at + 1 < line.length) {
      const ref = this.reference(line, at, pos);
      if (!ref) {
        at = line.indexOf('$', at + 1);
        continue;
      }
      if (++this.substitutions > LEX_LIMITS.substitutions) {
        throw new ConfigError(
          pos,
          `more than ${LEX_LIMITS.substitutions} parameter substitutions in one line (a definition that uses itself?)`,
        );
      }
      line = line.slice(0, at) + ref.lines[0]! + line.slice(ref.end);
      extra.unshift(...ref.lines.slice(1));
      if (line.length > LEX_LIMITS.lineChars) {
        throw new ConfigError(
          pos,
          `parameter substitution makes the line longer than ${LEX_LIMITS.lineChars} characters`,
        );
      }
      at = line.indexOf('$', at);
    }
    const rest = extra.flatMap((l) => this.substitute(l, pos));
    return [line, ...rest];
  }

  /** find_definition: the definition `$...` at `at` refers to, if there is one. */
  private reference(line: string, at: number, pos: SourcePos): { end: number; lines: string[] } | null {
    const braces = line[at + 1] === '{';
    const nameStart = at + (braces ? 2 : 1);
    const name = NAME_RE.exec(line.slice(nameStart))?.[0];
    if (!name) return null;
    let end = nameStart + name.length;
    let params = false;
    if (braces) {
      const m = /^((?:[ \t]+[A-Za-z0-9_]+)*)\}/.exec(line.slice(end));
      if (!m) return null;
      params = m[1] !== '';
      end += m[0].length;
    } else if (end < line.length && !' \t,)'.includes(line[end]!)) {
      return null;
    }
    if (Object.hasOwn(BUILTIN_REFUSED, name) && !this.defs.has(name))
      throw new ConfigError(pos, BUILTIN_REFUSED[name]!);
    if (name === '_PWD' && !this.defs.has(name)) return params ? null : { end, lines: [dirname(pos.file)] };
    const def = this.defs.get(name);
    if (!def || params) return null;
    // A multi-line value only stands at the end of a line (it continues on lines of its own).
    if (def.lines.length > 1 && end !== line.length) return null;
    return { end, lines: def.lines.length > 0 ? def.lines : [''] };
  }

  /**
   * A line after substitution: an include (checked on the whole line, so a glob may hold braces),
   * or keyword lines split at braces (the rest of a line after a brace may be an include too).
   */
  private emit(text: string, pos: SourcePos): void {
    if (this.include(text, pos)) return;
    for (const segment of splitBraces(text)) {
      if (segment !== text && this.include(segment, pos)) continue;
      if (this.lines.length >= LEX_LIMITS.lines) {
        throw new ConfigError(pos, `more than ${LEX_LIMITS.lines} configuration lines`);
      }
      const words = segment === '{' || segment === '}' ? [segment] : splitWords(segment, pos);
      if (words.length > 0) this.lines.push({ file: pos.file, line: pos.line, text: segment, words });
    }
  }

  private warn(pos: SourcePos, message: string): void {
    this.warnings.push({ file: pos.file, line: pos.line, message });
  }
}

/** strtol(s, 0): decimal, 0x hexadecimal or 0 octal, with blanks around; null if not a number. */
function readLong(text: string): number | null {
  const m = /^[ \t]*([+-]?)(0[xX][0-9A-Fa-f]+|0[0-7]*|[1-9][0-9]{0,15})[ \t]*$/.exec(text);
  if (!m) return null;
  const digits = m[2]!;
  const value = /^0[xX]/.test(digits)
    ? parseInt(digits, 16)
    : digits.startsWith('0')
      ? parseInt(digits, 8) || 0
      : Number(digits);
  return m[1] === '-' ? -value : value;
}

const decoder = new TextDecoder('utf-8');

/** Text, or an error at the first line holding a NUL or another control character: binary data. */
function decodeText(file: string, data: Uint8Array): string {
  let line = 1;
  for (const byte of data) {
    if (byte === 0x0a) line++;
    else if (byte < 0x20 && byte !== 0x09 && byte !== 0x0b && byte !== 0x0c && byte !== 0x0d) {
      throw new ConfigError(
        { file, line },
        `binary data (byte 0x${byte.toString(16).padStart(2, '0')}): not a keepalived.conf`,
      );
    }
  }
  return decoder.decode(data);
}

export interface LexResult {
  lines: ConfigLine[];
  warnings: Diagnostic[];
  /** Every file read, the main one first (what a reload watches). */
  files: string[];
}

/**
 * Reads `path` (absolute) and its includes into keepalived's line stream; throws ConfigError.
 * Warnings go to `warnings` as they come, so that those before an error are kept.
 */
export function lexKeepalivedConf(
  files: ConfigFiles,
  path: string,
  options: LexOptions,
  warnings: Diagnostic[] = [],
): LexResult {
  const lexer = new Lexer(files, options, warnings);
  lexer.readFile(path, null, true);
  return { lines: lexer.lines, warnings, files: lexer.filesRead };
}
