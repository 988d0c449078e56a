// Host and service names as ipvsadm gets them from the C library: /etc/hosts and /etc/services,
// then reverse DNS for addresses /etc/hosts does not name (bounded in time; LVSADM_RESOLVE=hosts
// turns DNS off). Read once per lvsadm run.

import { readFileSync } from 'node:fs';
import { Resolver } from 'node:dns/promises';
import { formatAddr, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, parseAddr } from '../core/inet.js';
import type { Addr, Protocol } from '../core/inet.js';
import type { NameTable } from '../ipvsadm/format.js';
import type { NameLookup } from '../ipvsadm/parse.js';

const PROTOCOL_NAMES: Record<number, string> = {
  [IPPROTO_TCP]: 'tcp',
  [IPPROTO_UDP]: 'udp',
  [IPPROTO_SCTP]: 'sctp',
};
const DNS_BUDGET_MS = 1500;

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function contentLines(text: string): string[][] {
  return text
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim().split(/\s+/))
    .filter((words) => words.length >= 2 && words[0] !== '');
}

export class SystemNames implements NameLookup {
  private readonly hostByName = new Map<string, Addr>();
  private readonly nameByAddr = new Map<string, string>();
  private readonly portByName = new Map<string, number>();
  private readonly nameByPort = new Map<string, string>();

  constructor(
    private readonly options: { dns: boolean; hostsText?: string; servicesText?: string } = { dns: true },
  ) {
    for (const [address, ...hostNames] of contentLines(options.hostsText ?? readText('/etc/hosts'))) {
      const addr = parseAddr(address!);
      if (!addr) continue;
      // The C library compares host names without regard to case (strcasecmp).
      for (const name of hostNames.map((n) => n.toLowerCase()))
        if (!this.hostByName.has(name)) this.hostByName.set(name, addr);
      if (!this.nameByAddr.has(formatAddr(addr))) this.nameByAddr.set(formatAddr(addr), hostNames[0]!);
    }
    for (const [name, portProto, ...aliases] of contentLines(
      options.servicesText ?? readText('/etc/services'),
    )) {
      const m = /^(\d+)\/(\w+)$/.exec(portProto!);
      if (!m) continue;
      const key = `${m[1]}/${m[2]}`;
      if (!this.nameByPort.has(key)) this.nameByPort.set(key, name!);
      for (const n of [name!, ...aliases])
        if (!this.portByName.has(`${n}/${m[2]}`)) this.portByName.set(`${n}/${m[2]}`, Number(m[1]));
    }
  }

  hostToAddr(name: string): Addr | null {
    const addr = this.hostByName.get(name.toLowerCase());
    return addr && addr.af === 4 ? addr : null;
  }

  serviceToPort(name: string, protocol: Protocol): number | null {
    return this.portByName.get(`${name}/${PROTOCOL_NAMES[protocol]}`) ?? null;
  }

  /** A NameTable for these addresses: /etc/hosts first, then reverse DNS within a time budget. */
  async resolve(addrs: readonly Addr[]): Promise<NameTable> {
    const hostNames = new Map<string, string>();
    const unknown: string[] = [];
    for (const addr of addrs) {
      const text = formatAddr(addr);
      const local = this.nameByAddr.get(text);
      if (local) hostNames.set(text, local);
      else if (!unknown.includes(text)) unknown.push(text);
    }
    if (this.options.dns && unknown.length > 0) {
      const resolver = new Resolver({ timeout: DNS_BUDGET_MS, tries: 1 });
      const lookups = unknown.map(async (text) => {
        const names = await resolver.reverse(text).catch(() => [] as string[]);
        if (names[0]) hostNames.set(text, names[0]);
      });
      let timer: NodeJS.Timeout | undefined;
      const budget = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, DNS_BUDGET_MS);
      });
      await Promise.race([Promise.all(lookups), budget]);
      clearTimeout(timer);
      resolver.cancel();
    }
    return {
      host: (addr) => hostNames.get(formatAddr(addr)) ?? null,
      service: (port, protocol) => {
        const proto = PROTOCOL_NAMES[protocol];
        return proto ? (this.nameByPort.get(`${port}/${proto}`) ?? null) : null;
      },
    };
  }
}
