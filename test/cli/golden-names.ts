// Fixed name tables for golden scripts, so listings without -n do not depend on this machine.

import { SystemNames } from '../../src/cli/names.js';

export const TEST_NAMES = new SystemNames({
  dns: false,
  hostsText: '127.0.0.1 localhost\n::1 ip6-localhost\n198.18.0.1 vip.example\n',
  servicesText: 'http 80/tcp www\nhttps 443/tcp\ndomain 53/udp\nssh 22/tcp\n',
});
