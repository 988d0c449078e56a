// keepalived's line stream as a tree of keyword lines and their `{ ... }` blocks. Unbalanced
// braces are errors here, so the parser can skip an unknown block whole (keepalived drops its `{`
// and lets its `}` close the enclosing block instead).

import { ConfigError, type ConfigLine, type SourcePos } from './lexer.js';

export interface ConfigNode extends SourcePos {
  readonly keyword: string;
  /** The words after the keyword. */
  readonly args: readonly string[];
  /** The whole line, for script keywords to re-split. */
  readonly text: string;
  /** The `{ ... }` that follows the line, or null. */
  block: ConfigNode[] | null;
}

export function buildTree(lines: readonly ConfigLine[]): ConfigNode[] {
  const top: ConfigNode[] = [];
  const open: Array<{ owner: ConfigNode; children: ConfigNode[] }> = [];
  let current = top;
  let previous: ConfigNode | null = null;
  for (const line of lines) {
    const word = line.words[0]!;
    if (word === '{' && line.words.length === 1) {
      if (!previous || previous.block) throw new ConfigError(line, "Unexpected '{'");
      previous.block = [];
      open.push({ owner: previous, children: current });
      current = previous.block;
      previous = null;
      continue;
    }
    if (word === '}' && line.words.length === 1) {
      const closed = open.pop();
      if (!closed) throw new ConfigError(line, "Extra '}' found");
      current = closed.children;
      previous = null;
      continue;
    }
    const node: ConfigNode = {
      file: line.file,
      line: line.line,
      keyword: word,
      args: line.words.slice(1),
      text: line.text,
      block: null,
    };
    current.push(node);
    previous = node;
  }
  const unclosed = open.pop();
  if (unclosed) {
    throw new ConfigError(unclosed.owner, `'${unclosed.owner.keyword}' block has no closing '}'`);
  }
  return top;
}
