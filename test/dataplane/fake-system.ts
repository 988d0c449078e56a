// A System that keeps the kernel state our commands touch as a set of facts, so a test can
// compare the host before and after: `ip ... add X` adds the fact X, `ip ... del X` removes it.
// It lists those facts as `ip -j` and `nft -j` do, and can lose them as a host does
// (flushRuleset, linkDown).

import type { System } from '../../src/dataplane/host.js';

interface NftTable {
  chains: number;
  rules: number;
}

export class FakeSystem implements System {
  readonly calls: string[] = [];
  readonly files = new Map<string, string>();
  /** Facts such as "ip -4 rule pref 0 lookup local" or "nft element inet lvsd svc4 198.18.0.1 . tcp . 80". */
  facts = new Set<string>(['ip -4 rule pref 0 lookup local', 'ip -6 rule pref 0 lookup local']);
  /** nft tables ("inet lvsd") with the chains and rules counted from the script that made them. */
  nftTables = new Map<string, NftTable>();
  /** `ip route get` answers by address; unknown addresses route out of eth0. */
  readonly routes = new Map<string, { type: string; dev: string }>();
  /** A command prefix that fails, to inject errors. */
  failing: string | null = null;

  run(argv: readonly string[], input?: string): string {
    const line = argv.join(' ');
    this.calls.push(line);
    if (this.failing !== null && line.startsWith(this.failing)) throw new Error(`${line}: injected failure`);
    if (argv[0] === 'ip' && argv[2] === '-j' && argv[3] === '-batch') {
      const commands = (input ?? '').split('\n').filter(Boolean);
      return commands
        .map((c) => JSON.stringify(this.ipList(['ip', argv[1]!, '-j', ...c.split(' ')])))
        .join('\n');
    }
    if (argv[0] === 'ip' && argv[2] === '-j') return JSON.stringify(this.ipList(argv));
    if (argv[0] === 'ip') {
      const [, family, object, verb, ...rest] = argv;
      const fact = `ip ${family} ${object} ${rest.join(' ')}`;
      if (verb === 'add') this.addFact(fact);
      else if (verb === 'del') this.removeFact(fact);
      else throw new Error(`unexpected ip verb in ${line}`);
      return '';
    }
    if (line === 'nft -f -') {
      this.transaction(() => this.nftScript(input ?? ''));
      return '';
    }
    if (argv[0] === 'nft' && argv[1] === '-j' && argv[2] === 'list' && argv[3] === 'table') {
      return JSON.stringify(this.nftList(`${argv[4]} ${argv[5]}`));
    }
    if (argv[0] === 'nft' && argv[1] === '-j' && argv[2] === 'list' && argv[3] === 'set') {
      return JSON.stringify(this.nftListSet(`${argv[4]} ${argv[5]}`, argv[6]!));
    }
    if (argv[0] === 'nft' && argv[1] === 'delete' && argv[2] === 'table') {
      this.deleteTable(`${argv[3]} ${argv[4]}`);
      return '';
    }
    if (argv[0] === 'nft' && argv[2] === 'element') {
      const [, verb, , family, table, set, body] = argv;
      this.transaction(() =>
        this.elements(verb!, `${family} ${table}`, set!, body!.replace(/^\{ | \}$/g, '')),
      );
      return '';
    }
    throw new Error(`unexpected command ${line}`);
  }

  /** As nft -f (the session's ownership is the kernel's to model, not this fake's). */
  nftOwned(script: string): void {
    this.run(['nft', '-f', '-'], script);
  }

  /** What `nft flush ruleset` (a firewall reload) does. */
  flushRuleset(): void {
    for (const table of [...this.nftTables.keys()]) this.deleteTable(table);
  }

  /** What `ip link set DEV down` does to the routes through DEV (both families). */
  linkDown(dev: string): void {
    for (const fact of [...this.facts]) {
      if (/^ip -[46] route /.test(fact) && fact.includes(` dev ${dev}`)) this.facts.delete(fact);
    }
  }

  private ipList(argv: readonly string[]): unknown[] {
    const [, family, , object, verb, target] = argv;
    if (object === 'route' && verb === 'get') {
      const route = this.routes.get(target!) ?? { type: 'unicast', dev: 'eth0' };
      return [{ type: route.type, dst: target, dev: route.dev }];
    }
    const prefix = `ip ${family} ${object} `;
    const listed = [...this.facts].filter((f) => f.startsWith(prefix)).map((f) => f.slice(prefix.length));
    if (object === 'rule') {
      return listed.map((fact) => {
        const words = options(fact.split(' '));
        const mark = words.get('fwmark');
        return {
          priority: Number(words.get('pref')),
          src: 'all',
          ...(mark !== undefined ? { fwmark: `0x${Number(mark).toString(16)}` } : {}),
          table: words.get('lookup'),
        };
      });
    }
    if (object === 'route') {
      return listed.map((fact) => {
        const words = fact.split(' ');
        const type = words[0] === 'blackhole' ? words.shift() : undefined;
        const dst = words.shift()!.replace(/\/(32|128)$/, '');
        const rest = options(words);
        const metric = rest.get('metric');
        return {
          ...(type ? { type } : {}),
          dst,
          ...(rest.has('dev') ? { dev: rest.get('dev') } : {}),
          ...(rest.has('table') ? { table: rest.get('table') } : {}),
          ...(metric !== undefined ? { metric: Number(metric) } : {}),
        };
      });
    }
    if (object === 'neigh') {
      return listed.map((fact) => {
        const [, dst, , dev] = fact.split(' ');
        return { dst, dev, proxy: null };
      });
    }
    throw new Error(`unexpected listing ${argv.join(' ')}`);
  }

  private nftList(table: string): unknown {
    const shape = this.nftTables.get(table);
    if (!shape) throw new Error(`nft: Error: No such file or directory: ${table}`);
    const [family, name] = table.split(' ');
    const sets = new Map<string, string[]>();
    for (const fact of this.facts) {
      const m = /^nft element (\w+ \w+) (\w+) (.*)$/.exec(fact);
      if (m && m[1] === table) sets.set(m[2]!, [...(sets.get(m[2]!) ?? []), m[3]!]);
    }
    return {
      nftables: [
        { table: { family, name } },
        ...[...sets].map(([set, elem]) => ({ set: { family, name: set, table: name, elem } })),
        ...Array.from({ length: shape.chains }, (_, i) => ({ chain: { name: `c${i}` } })),
        ...Array.from({ length: shape.rules }, () => ({ rule: { family, table: name } })),
      ],
    };
  }

  /** One set as `nft -j list set` shows it; an element "A . B timeout 5s" has 5 s left. */
  private nftListSet(table: string, set: string): unknown {
    if (!this.nftTables.has(table)) throw new Error(`nft: Error: No such file or directory: ${table}`);
    const prefix = `nft element ${table} ${set} `;
    const elem = [...this.facts]
      .filter((fact) => fact.startsWith(prefix))
      .map((fact) => {
        const [, key, seconds] = /^(.*?)(?: timeout (\d+)s)?$/.exec(fact.slice(prefix.length))!;
        const concat = key!.split(' . ').map((part) => (/^\d+$/.test(part) ? Number(part) : part));
        return { elem: { val: { concat }, expires: Number(seconds ?? 0) } };
      });
    return { nftables: [{ set: { family: table.split(' ')[0], name: set, elem } }] };
  }

  /** Runs a change atomically, as nft does: all of it or, when it throws, none. */
  private transaction(change: () => void): void {
    const facts = new Set(this.facts);
    const tables = new Map(this.nftTables);
    try {
      change();
    } catch (error) {
      this.facts = facts;
      this.nftTables = tables;
      throw error;
    }
  }

  /** The nft script lines HostNetwork writes: table blocks, `delete table`, `add element`. */
  private nftScript(script: string): void {
    const lines = script.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      let m: RegExpExecArray | null;
      if ((m = /^table (\w+ \w+) \{(?: flags owner; )?\}$/.exec(line))) {
        if (!this.nftTables.has(m[1]!)) this.createTable(m[1]!, { chains: 0, rules: 0 });
      } else if ((m = /^delete table (\w+ \w+)$/.exec(line))) {
        this.deleteTable(m[1]!);
      } else if ((m = /^table (\w+ \w+) \{$/.exec(line))) {
        const shape = { chains: 0, rules: 0 };
        let inChain = false;
        for (i++; i < lines.length && lines[i] !== '}'; i++) {
          const body = lines[i]!.trim();
          if (/^chain \w+ \{$/.test(body)) [inChain, shape.chains] = [true, shape.chains + 1];
          else if (body === '}') inChain = false;
          else if (inChain && !body.startsWith('type ')) shape.rules++;
        }
        if (i >= lines.length) throw new Error('nft: unterminated table');
        const existing = this.nftTables.get(m[1]!);
        if (existing)
          this.nftTables.set(m[1]!, {
            chains: existing.chains + shape.chains,
            rules: existing.rules + shape.rules,
          });
        else this.createTable(m[1]!, shape);
      } else if ((m = /^add element (\w+ \w+) (\w+) \{ (.*) \}$/.exec(line))) {
        this.elements('add', m[1]!, m[2]!, m[3]!);
      } else if (line.trim() !== '') {
        throw new Error(`nft: unexpected line ${line}`);
      }
    }
  }

  private createTable(table: string, shape: NftTable): void {
    this.nftTables.set(table, shape);
    this.addFact(`nft table ${table}`);
  }

  private deleteTable(table: string): void {
    if (!this.nftTables.delete(table)) throw new Error(`nft: no table ${table}`);
    this.removeFact(`nft table ${table}`);
    for (const fact of [...this.facts]) if (fact.startsWith(`nft element ${table} `)) this.facts.delete(fact);
  }

  private elements(verb: string, table: string, set: string, body: string): void {
    if (!this.nftTables.has(table)) throw new Error(`nft: no table ${table}`);
    for (const e of body.split(', ')) {
      const fact = `nft element ${table} ${set} ${e}`;
      if (verb === 'add') this.addFact(fact);
      else this.removeFact(fact);
    }
  }

  private addFact(fact: string): void {
    if (this.facts.has(fact)) throw new Error(`${fact}: File exists`);
    this.facts.add(fact);
  }

  private removeFact(fact: string): void {
    if (!this.facts.delete(fact)) throw new Error(`${fact}: No such file or directory`);
  }

  readFile(path: string): string | null {
    return this.files.get(path) ?? null;
  }

  writeFile(path: string, data: string): void {
    if (path.startsWith('/proc/') && !this.files.has(path)) throw new Error(`${path}: No such file`);
    this.files.set(path, data);
  }

  removeFile(path: string): void {
    this.files.delete(path);
  }

  /** Facts and file contents, for before/after comparisons. */
  state(): { facts: string[]; files: [string, string][] } {
    return { facts: [...this.facts].sort(), files: [...this.files].sort() };
  }
}

/** "pref 90 fwmark 7 lookup 19542" as pairs. */
function options(words: string[]): Map<string, string> {
  const pairs = new Map<string, string>();
  for (let i = 0; i + 1 < words.length; i += 2) pairs.set(words[i]!, words[i + 1]!);
  return pairs;
}
