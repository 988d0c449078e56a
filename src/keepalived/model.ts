// What a keepalived.conf configures, in lvsd's own terms: IPVS services as ServiceKey and
// ServiceSettings, real servers as DestSettings, health checks as CheckerConfig, every keepalived
// default already resolved. The daemon runs from this; `lvsd check-config` prints it.

import type { Addr } from '../core/inet.js';
import type { DestSettings, ServiceKey, ServiceSettings } from '../core/model.js';
import type { IpvsTimeouts } from '../core/ops.js';
import type { CheckerConfig } from '../health/config.js';
import type { Diagnostic, SourcePos } from './lexer.js';

/** A script keyword's command: argv split as keepalived splits it, and whom to run it as. */
export interface ScriptConfig {
  argv: string[];
  /** null: the global script_user, else lvsd's own user. */
  user: string | null;
  group: string | null;
}

export interface RealServerConfig {
  addr: Addr;
  /** 0 on a group's real server without a port: each of the group's services uses its own port. */
  port: number;
  /** The configured weight (effective weight starts there), forwarding method and thresholds. */
  settings: DestSettings;
  /** All must pass for the real server to be alive; none means always alive. */
  checkers: CheckerConfig[];
  /** inhibit_on_failure: on failure keep it at weight 0 rather than removing it. */
  inhibitOnFailure: boolean;
  notifyUp: ScriptConfig | null;
  notifyDown: ScriptConfig | null;
  pos: SourcePos;
}

export interface SorryServerConfig {
  addr: Addr;
  port: number;
  settings: DestSettings;
  /** sorry_server_inhibit: kept at weight 0 while the quorum is up, rather than absent. */
  inhibit: boolean;
  pos: SourcePos;
}

export interface VirtualServerConfig {
  /** As keepalived's messages name it: `[192.0.2.1]:tcp:80`, `FWM 5`, `[GROUP]:0`. */
  name: string;
  /** virtual_server group NAME, or null. */
  group: string | null;
  /** The IPVS services it makes: one, or one per address (and fwmark) of its group. */
  services: ServiceKey[];
  settings: ServiceSettings;
  realServers: RealServerConfig[];
  sorryServer: SorryServerConfig | null;
  /** Sum of alive real servers' weights needed: gained at quorum + hysteresis, lost below quorum - hysteresis. */
  quorum: number;
  hysteresis: number;
  quorumUp: ScriptConfig | null;
  quorumDown: ScriptConfig | null;
  /** omega: run quorum_down and notify_down scripts at shutdown too. */
  omega: boolean;
  pos: SourcePos;
}

export interface NotifyFifoConfig {
  path: string;
  script: ScriptConfig | null;
}

export interface KeepalivedConfig {
  virtualServers: VirtualServerConfig[];
  /** lvs_timeouts; 0 leaves a value as it is (as ipvsadm --set); null when absent. */
  timeouts: IpvsTimeouts | null;
  /** lvs_flush: clear every service at start. */
  flush: boolean;
  /** notify_fifo and lvs_notify_fifo (global_defs): where `RS ... UP|DOWN` lines go. */
  notifyFifo: NotifyFifoConfig | null;
  lvsNotifyFifo: NotifyFifoConfig | null;
  /** rs_init_notifies: notify every real server's state at start. */
  rsInitNotifies: boolean;
  /** script_user [group]: whom scripts run as when they do not say. */
  scriptUser: { user: string; group: string | null } | null;
  /** enable_script_security: refuse scripts that a non-root user could change. */
  scriptSecurity: boolean;
  warnings: Diagnostic[];
  /** Every file read, the main one first. */
  files: string[];
}

/** The port a real server has in one of its virtual server's services. */
export function realServerPort(service: ServiceKey, port: number): number {
  return port !== 0 ? port : service.port;
}
