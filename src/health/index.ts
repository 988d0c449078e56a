// Every checker, registered by keepalived's name on import.

import './tcp.js';
import './http.js';
import './udp.js';
import './dns.js';
import './ping.js';
import './misc.js';

export {
  createChecker,
  registeredCheckers,
  type Checker,
  type CheckResult,
  type CheckCode,
} from './checker.js';
