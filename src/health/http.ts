// HTTP_GET and SSL_GET (keepalived check_http.c): for every url, a fresh connection, the GET
// request exactly as keepalived writes it, the status checked against status_code's ranges and,
// with a digest, the MD5 of everything after the headers up to the end of the response (what
// genhash computes). Every url must pass. The headers are bounded and the body is hashed as it
// streams, never stored, and cut off past a limit, so a gigantic or endless response costs
// neither memory nor more than the deadline.

import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { ErrorCodes, LvsError } from '../core/errors.js';
import { formatAddr } from '../core/inet.js';
import type { CheckerConfig, HttpUrl } from './config.js';
import {
  registerChecker,
  result,
  settleOnce,
  socketReason,
  type CheckAttempt,
  type Checker,
  type CheckResult,
} from './checker.js';
import { connectTcp } from './sockets.js';

type HttpConfig = Extract<CheckerConfig, { kind: 'HTTP_GET' | 'SSL_GET' }>;

/** Status line and headers larger than this are not a web server's answer. */
export const MAX_HEADER_BYTES = 16 * 1024;
/** A body hashed for a digest is cut off past this. */
export const MAX_BODY_BYTES = 16 * 1024 * 1024;

/** keepalived's request (check_http.c request_template): the Host is the virtualhost, else address:port. */
export function httpRequest(config: HttpConfig, url: HttpUrl): string {
  const vhost = url.virtualhost ?? config.virtualhost;
  const { addr, port } = config.target;
  const host = vhost ?? (addr.af === 6 ? `[${formatAddr(addr)}]:${port}` : `${formatAddr(addr)}:${port}`);
  const minor = config.httpProtocol === '1.1' ? 1 : 0;
  const close = config.httpProtocol === '1.0' ? '' : 'Connection: close\r\n';
  return `GET ${url.path} HTTP/1.${minor}\r\nUser-Agent: KeepAliveClient\r\n${close}Host: ${host}\r\n\r\n`;
}

const STATUS_LINE = /^HTTP\/\d\.\d (\d{3})(?: |\r|$)/;

function statusAccepted(status: number, ranges: Array<[number, number]>): boolean {
  return ranges.some(([lo, hi]) => status >= lo && status <= hi);
}

/** One url over one connection. */
function checkUrl(config: HttpConfig, url: HttpUrl, attempt: CheckAttempt): Promise<CheckResult> {
  const ssl = config.kind === 'SSL_GET';
  let phase: 'connect' | 'handshake' | 'response' = 'connect';
  return settleOnce(
    attempt,
    (t0) =>
      phase === 'connect'
        ? result(t0, false, 'L4TOUT', `no connection within ${attempt.timeoutMs} ms`)
        : phase === 'handshake'
          ? result(t0, false, 'L6TOUT', `no TLS handshake within ${attempt.timeoutMs} ms`)
          : result(t0, false, 'L7TOUT', `no complete response within ${attempt.timeoutMs} ms`),
    (finish, t0) => {
      const raw = connectTcp(config.target);
      let socket: Socket = raw;
      const request = httpRequest(config, url);
      const send = () => {
        phase = 'response';
        socket.write(request);
      };
      raw.once('connect', () => {
        if (!ssl) return send();
        phase = 'handshake';
        const vhost = url.virtualhost ?? config.virtualhost;
        const secure = tls.connect({
          socket: raw,
          // keepalived does not verify the server's certificate either.
          rejectUnauthorized: false,
          ...(config.enableSni ? { servername: vhost ?? formatAddr(config.target.addr) } : {}),
        });
        socket = secure;
        secure.once('secureConnect', send);
        secure.on('error', (error) =>
          finish(
            phase === 'handshake'
              ? result(t0, false, 'L6RSP', `TLS handshake failed: ${error.message}`)
              : result(t0, false, 'L7RSP', socketReason(error)),
          ),
        );
        secure.on('data', onData);
        secure.once('end', onEnd);
      });
      raw.on('error', (error) =>
        finish(
          result(
            t0,
            false,
            phase === 'connect' ? 'L4CON' : phase === 'handshake' ? 'L6RSP' : 'L7RSP',
            socketReason(error),
          ),
        ),
      );
      if (!ssl) {
        raw.on('data', onData);
        raw.once('end', onEnd);
      }

      let head = Buffer.alloc(0);
      let status = 0;
      let bodyBytes = 0;
      const md5 = url.digest ? createHash('md5') : null;
      function onData(chunk: Buffer): void {
        if (status === 0) {
          head = Buffer.concat([head, chunk]);
          const end = head.indexOf('\r\n\r\n');
          if (end < 0) {
            if (head.length > MAX_HEADER_BYTES)
              finish(result(t0, false, 'L7RSP', `no end of headers in ${MAX_HEADER_BYTES} bytes`));
            else if (head.length >= 12 && !STATUS_LINE.test(head.toString('latin1', 0, 16)))
              finish(result(t0, false, 'L7RSP', 'not an HTTP response'));
            return;
          }
          const match = STATUS_LINE.exec(head.toString('latin1', 0, Math.min(end + 2, 64)));
          if (!match) return finish(result(t0, false, 'L7RSP', 'not an HTTP response'));
          status = Number(match[1]);
          if (!statusAccepted(status, url.statusCodes))
            return finish(result(t0, false, 'L7STS', `HTTP status ${status}`));
          if (!md5) return finish(result(t0, true, 'L7OK', `HTTP status ${status}`));
          chunk = head.subarray(end + 4);
          head = Buffer.alloc(0);
        }
        bodyBytes += chunk.length;
        if (bodyBytes > MAX_BODY_BYTES)
          return finish(result(t0, false, 'L7RSP', `body larger than ${MAX_BODY_BYTES} bytes`));
        md5!.update(chunk);
      }
      function onEnd(): void {
        if (status === 0) return finish(result(t0, false, 'L7RSP', 'connection closed before a response'));
        const digest = md5!.digest('hex');
        finish(
          digest === url.digest
            ? result(t0, true, 'L7OK', `HTTP status ${status}, digest matches`)
            : result(t0, false, 'L7RSP', `digest ${digest} differs`),
        );
      }
      return () => {
        socket.destroy();
        raw.destroy();
      };
    },
  );
}

/**
 * Every url must pass. A recovering checker (DOWN, or alpha before its first success) checks one
 * url per attempt, so one per delay_loop, and passes only when the last of them has passed in a
 * row, as keepalived does unless fast_recovery is set.
 */
export function httpChecker(config: HttpConfig): Checker {
  if (config.urls.length === 0)
    throw new LvsError(ErrorCodes.INVALID, `${config.kind} needs at least one url`);
  const perUrl = config.connectTimeoutMs;
  let next = 0;
  return {
    kind: config.kind,
    timeoutMs: perUrl * config.urls.length,
    async check(attempt) {
      const sub = { timeoutMs: perUrl, signal: attempt.signal };
      if (attempt.recovering && !config.fastRecovery && config.urls.length > 1) {
        const url = config.urls[next]!;
        const r = await checkUrl(config, url, sub);
        if (!r.ok) {
          next = 0;
          return { ...r, reason: `${url.path}: ${r.reason}` };
        }
        next = (next + 1) % config.urls.length;
        if (next === 0) return r;
        // Not up yet: the next url waits for the next delay_loop.
        return { ...r, ok: false, reason: `${url.path} passed, ${config.urls.length - next} url(s) to go` };
      }
      next = 0;
      let last: CheckResult | null = null;
      let total = 0;
      for (const url of config.urls) {
        const r = await checkUrl(config, url, sub);
        total += r.durationMs;
        if (!r.ok) return { ...r, reason: `${url.path}: ${r.reason}`, durationMs: total };
        last = r;
      }
      return { ...last!, durationMs: total };
    },
  };
}

registerChecker({ kinds: ['HTTP_GET', 'SSL_GET'], create: httpChecker });
