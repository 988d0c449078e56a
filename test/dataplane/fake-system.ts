// A System that keeps the kernel state our commands touch as a set of facts, so a test can
// compare the host before and after: `ip ... add X` adds the fact X, `ip ... del X` removes it.

import type { System } from '../../src/dataplane/host.js';

export class FakeSystem implements System {
  readonly calls: string[] = [];
  readonly files = new Map<string, string>();
  /** Facts such as "ip -4 rule pref 0 lookup local" or "nft element inet lvsd svc4 198.18.0.1 . tcp . 80". */
  readonly facts = new Set<string>(['ip -4 rule pref 0 lookup local', 'ip -6 rule pref 0 lookup local']);
  /** `ip route get` answers by address; unknown addresses route out of eth0. */
  readonly routes = new Map<string, { type: string; dev: string }>();
  /** A command prefix that fails, to inject errors. */
  failing: string | null = null;

  run(argv: readonly string[], input?: string): string {
    const line = argv.join(' ');
    this.calls.push(line);
    if (this.failing !== null && line.startsWith(this.failing)) throw new Error(`${line}: injected failure`);
    if (argv[0] === 'ip' && argv[2] === '-j' && argv[3] === 'route' && argv[4] === 'get') {
      const route = this.routes.get(argv[5]!) ?? { type: 'unicast', dev: 'eth0' };
      return JSON.stringify([{ type: route.type, dst: argv[5], dev: route.dev }]);
    }
    if (argv[0] === 'ip') {
      const [, family, object, verb, ...rest] = argv;
      const fact = `ip ${family} ${object} ${rest.join(' ')}`;
      if (verb === 'add') this.addFact(fact);
      else if (verb === 'del') this.removeFact(fact);
      else throw new Error(`unexpected ip verb in ${line}`);
      return '';
    }
    if (line === 'nft -f -') {
      const table = /^table (\w+ \w+) \{/m.exec(input ?? '');
      if (!table) throw new Error('nft: no table in input');
      this.addFact(`nft table ${table[1]}`);
      return '';
    }
    if (argv[0] === 'nft' && argv[2] === 'table') {
      const table = `nft table ${argv[3]} ${argv[4]}`;
      this.removeFact(table);
      for (const fact of [...this.facts])
        if (fact.startsWith(`nft element ${argv[3]} ${argv[4]} `)) this.facts.delete(fact);
      return '';
    }
    if (argv[0] === 'nft' && argv[2] === 'element') {
      const [, verb, , family, table, set, body] = argv;
      if (!this.facts.has(`nft table ${family} ${table}`)) throw new Error(`nft: no table ${table}`);
      for (const e of body!.replace(/^\{ | \}$/g, '').split(', ')) {
        const fact = `nft element ${family} ${table} ${set} ${e}`;
        if (verb === 'add') this.addFact(fact);
        else this.removeFact(fact);
      }
      return '';
    }
    throw new Error(`unexpected command ${line}`);
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
