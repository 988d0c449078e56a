// lvsd as a library: the pure director (service and connection tables, the schedulers, the
// packet path) and ipvsadm's language as a codec, for programs that embed them. No I/O here:
// the caller brings the clock, the packets and the sockets. docs/library.md shows the use.

export { Director, type DirectorOptions } from './core/director.js';
export { ServiceTable } from './core/services.js';
export { ManualClock, type Clock } from './core/clock.js';
export { ErrorCodes, LvsError, isLvsError, type ErrorCode } from './core/errors.js';
export { parseAddr, formatAddr, type Addr, type Family, type Protocol } from './core/inet.js';
export type { DestSettings, ForwardMethod, ServiceKey, ServiceSettings } from './core/model.js';
export {
  PASS_TO_HOST,
  type ControlOp,
  type ConnRecord,
  type Snapshot,
  type StatsSnapshot,
  type U64Text,
} from './core/ops.js';
export { findScheduler, registerScheduler, schedulerNames } from './core/sched/registry.js';
export type { Scheduler } from './core/sched/types.js';
export { parseArgs, emptyListFormat, type Command, type ListFormat } from './ipvsadm/parse.js';
export { formatServiceList, formatRules, formatJson, NUMERIC_NAMES } from './ipvsadm/format.js';
export { renderRules } from './ipvsadm/rules.js';
