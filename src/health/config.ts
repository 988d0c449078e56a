// What a health check of a real server is configured with: keepalived's checker keywords as
// data, with every default already filled in (the keepalived.conf reader resolves them), so the
// checkers and the scheduler of checks never guess. Times are in milliseconds.

import type { Addr } from '../core/inet.js';

/** Timing and retry rules shared by every checker (keepalived's per-checker keywords). */
export interface CheckTiming {
  /** delay_loop: time between checks of an UP checker, and between retries of a DOWN one. */
  delayLoopMs: number;
  /** connect_timeout: how long one attempt may take. */
  connectTimeoutMs: number;
  /** retry: extra attempts after a failure before an UP checker goes DOWN. */
  retry: number;
  /** delay_before_retry: time between those attempts. */
  delayBeforeRetryMs: number;
  /** warmup: the first check is delayed by a random time in [0, warmupMs]. */
  warmupMs: number;
  /** alpha: the checker starts DOWN (the real server is not used until a check passes). */
  alpha: boolean;
  /** log_all_failures: log every failed attempt, not only transitions. */
  logAllFailures: boolean;
}

/** Where the check connects: the real server's address and port unless connect_ip/connect_port say otherwise. */
export interface CheckTarget {
  addr: Addr;
  port: number;
  /** bindto / bind_port: the local address and port the check uses. */
  bindAddr: Addr | null;
  bindPort: number;
  /** bind_if: the interface for an IPv6 link-local target. */
  bindInterface: string | null;
  /** fwmark: mark the check's packets (SO_MARK). */
  fwmark: number;
}

export interface HttpUrl {
  path: string;
  /** MD5 of the body, lower-case hex (genhash's output), or null for none. */
  digest: string | null;
  /** status_code: accepted statuses as inclusive ranges; default [[200, 299]]. */
  statusCodes: Array<[number, number]>;
  /** virtualhost for this url (overrides the checker's). */
  virtualhost: string | null;
}

export type CheckerConfig = CheckTiming &
  (
    | { kind: 'TCP_CHECK'; target: CheckTarget }
    | {
        kind: 'HTTP_GET' | 'SSL_GET';
        target: CheckTarget;
        urls: HttpUrl[];
        virtualhost: string | null;
        /** http_protocol: 1.0 (default), 1.0C (1.0 with Connection: close), 1.1. */
        httpProtocol: '1.0' | '1.0C' | '1.1';
        /** enable_sni (SSL_GET): send the virtualhost (or address) as SNI. */
        enableSni: boolean;
        /** fast_recovery: check every url on recovery, not one per delay_loop. */
        fastRecovery: boolean;
      }
    | {
        kind: 'UDP_CHECK';
        target: CheckTarget;
        /** payload to send; null sends a random one. */
        payload: Uint8Array | null;
        /** require_reply: null = fail only on an ICMP error; else a reply must come and start with these bytes (may be empty). */
        requireReply: Uint8Array | null;
        minReplyLength: number;
        maxReplyLength: number;
      }
    | {
        kind: 'DNS_CHECK';
        target: CheckTarget;
        type: 'A' | 'NS' | 'CNAME' | 'SOA' | 'MX' | 'TXT' | 'AAAA';
        name: string;
      }
    | { kind: 'PING_CHECK'; target: CheckTarget }
    | {
        kind: 'MISC_CHECK';
        /** misc_path split into argv as keepalived splits it (quotes respected). */
        argv: string[];
        /** misc_timeout: the script is killed after this long (default delay_loop). */
        timeoutMs: number;
        /** misc_dynamic: exit 2..255 means UP with weight = status - 2. */
        dynamic: boolean;
        /** user [group] to run the script as, or null for lvsd's own. */
        user: string | null;
        group: string | null;
      }
  );

export type CheckerKind = CheckerConfig['kind'];
