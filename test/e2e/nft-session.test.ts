// lvsd's own nft session against the real kernel, in a namespace of its own: a table it makes with
// `flags owner` is its alone, survives a firewall reload, and is gone the moment the session ends.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NftSession } from '../../src/dataplane/nft-session.js';
import { cleanupStaleLabs, sh } from '../../src/lab/lab.js';
import { ROOT_SKIP } from './harness.js';

const PREFIX = 'lvsqp';
const NS = `${PREFIX}${process.pid}-nft`;
const TABLE = `table netdev owned {
  flags owner
  chain in {
    type filter hook ingress device "v0" priority -500; policy accept;
  }
}
`;

const nft = (...args: string[]): string => sh(['ip', 'netns', 'exec', NS, 'nft', ...args]);
const tables = (): string => nft('list', 'tables');

describe('NftSession (root, netns)', { skip: ROOT_SKIP }, () => {
  before(() => {
    cleanupStaleLabs(PREFIX);
    sh(['ip', 'netns', 'add', NS]);
    sh(['ip', '-n', NS, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1']);
  });
  after(() => sh(['ip', 'netns', 'del', NS]));

  it('owns what it makes: others cannot change it, a flush passes it by, its end removes it', () => {
    const session = new NftSession(['ip', 'netns', 'exec', NS, 'nft']);
    try {
      session.run(TABLE);
      session.run('add set netdev owned s { type ipv4_addr; }\nadd element netdev owned s { 198.18.0.1 }\n');
      assert.match(tables(), /table netdev owned/);
      assert.throws(() => nft('delete', 'table', 'netdev', 'owned'), /Operation not permitted/);
      nft('flush', 'ruleset');
      assert.match(nft('list', 'set', 'netdev', 'owned', 's'), /198\.18\.0\.1/);
      // A script nft refuses changes nothing and says why.
      assert.throws(() => session.run('add element netdev owned nosuch { 198.18.0.2 }\n'), /nft: .*Error/s);
      assert.match(nft('list', 'set', 'netdev', 'owned', 's'), /198\.18\.0\.1/);
    } finally {
      session.close();
    }
    // nft reads the end of its input and exits; the kernel drops the table with its socket.
    for (let i = 0; i < 200 && /owned/.test(tables()); i++) sh(['sleep', '0.05']);
    assert.doesNotMatch(tables(), /owned/);
  });
});
