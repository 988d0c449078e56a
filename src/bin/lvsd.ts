#!/usr/bin/env node
// lvsd: the director daemon. This main picks the engine; the control side lives in
// src/control/daemon.ts, the packet path in src/dataplane/.

import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DEFAULT_DEFENSE, defenseSettings, type DefenseSettings } from '../core/conn/defense.js';
import { MAX_CAPACITY } from '../core/conn/table.js';
import { DEFAULT_EXPIRY, type ExpirySettings } from '../core/conn/expiry.js';
import { DEFAULT_CONN_CAPACITY, Director } from '../core/director.js';
import { DEFAULT_SOCKET_PATH } from '../cli/client.js';
import { DEFAULT_STATE_DIR, startDaemon } from '../control/daemon.js';
import type { RunningDaemon } from '../control/daemon.js';
import { KeepalivedSource } from '../control/keepalived-source.js';
import { StateLockError } from '../control/lock.js';
import { DEFAULT_RESTART_HOLD_MS } from '../control/restart.js';
import { stderrLogger } from '../control/log.js';
import { StateFileError } from '../control/state-file.js';
import type { Engine } from '../core/engine.js';
import type { ForwardingCapability } from '../core/forward/types.js';
import type { Snapshot } from '../core/ops.js';
import { InProcessEngine } from '../control/in-process-engine.js';
import { checkDataplaneCapabilities } from '../dataplane/capabilities.js';
import { DATAPLANE_FORWARDING, DEFAULT_DATAPLANE } from '../dataplane/forwarding.js';
import { DATAPLANE_KINDS, startDataplaneEngine, type DataplaneKind } from '../dataplane/start.js';
import { reloadingFields, systemdNotifier } from '../control/sd-notify.js';
import { parseListenAddress } from '../http/address.js';
import { readKeepalivedConf } from '../keepalived/read.js';
import { defaultConfigId } from './check-config.js';
import { fileSystemConfigFiles } from './keepalived-files.js';
import type { ListenAddress } from '../http/address.js';
import { readTokenFile } from '../http/auth.js';
import { readBuildInfo } from '../http/build-info.js';
import { startHttpListener } from '../http/server.js';
import type { HttpListener } from '../http/server.js';

const USAGE = `Usage: lvsd [--socket PATH] [--state-dir DIR] [--no-dataplane | --dataplane packet|tun]
            [--http [ADDR:]PORT]
            [--http-token-file FILE]
            [--conn-capacity N] [--drop-entry MODE] [--secure-tcp MODE]
            [--defense-threshold PERCENT] [--early-drop on|off]
            [--syn-proxy MODE] [--syn-proxy-threshold N]
            [--expire-nodest-conn 0|1] [--expire-quiescent-template 0|1]
            [--keepalived-conf FILE] [--floating-vips] [--restart-hold SECONDS]
       lvsd demo [--keep] [--ha]
       lvsd check-config [--config-id ID] FILE
  --socket PATH     control socket (default ${DEFAULT_SOCKET_PATH}, or $LVSD_SOCKET)
  --state-dir DIR   where the configuration is saved (default ${DEFAULT_STATE_DIR}, or $LVSD_STATE_DIR)
  --no-dataplane    keep and serve the configuration only, move no packets (no root needed)
  --dataplane packet|tun  how packets reach lvsd: packet (default) reads them off the VIPs' and
                    real servers' interfaces with AF_PACKET rings and sends them out with the next
                    hop's MAC; tun steers them through a TUN device (docs/host.md)
  --http [ADDR:]PORT  serve Prometheus metrics at http://ADDR:PORT/metrics and the live dashboard at
                      http://ADDR:PORT/ (off unless given); PORT alone listens on loopback
                      (127.0.0.1); ADDR is an IP address: [::1] for IPv6, 0.0.0.0 for every address
                      (anyone who reaches it can read the metrics and the dashboard)
  --http-token-file FILE  the dashboard's drain/ready/maint/weight buttons need the token on this
                      file's first line (16+ characters); without it the dashboard is read-only
  --conn-capacity N   most connections and persistence templates held at once, 1..${MAX_CAPACITY}
                      (default ${DEFAULT_CONN_CAPACITY}; about 100 bytes each, taken at start)
  --drop-entry MODE   evict half-open entries at random each second: 0 never, 1 when the table is
                      over the threshold, 3 always (default ${DEFAULT_DEFENSE.dropEntry}; IPVS's drop_entry)
  --secure-tcp MODE   stricter TCP states, 10 s half-open timeouts: 0, 1 or 3 as above
                      (default ${DEFAULT_DEFENSE.secureTcp}; IPVS's secure_tcp)
  --defense-threshold PERCENT  share of the table in use that switches mode 1 on (default ${DEFAULT_DEFENSE.thresholdPercent})
  --early-drop on|off a new connection on a full table evicts a half-open one (default on)
  --syn-proxy MODE    answer the SYNs of IPv4 NAT services with SYN cookies, so that a SYN flood
                      reaches neither the table nor the real servers: 0, 1 or 3 as above; 1 switches
                      on when a second leaves N handshakes unanswered (default ${DEFAULT_DEFENSE.synProxy}; docs/limits.md)
  --syn-proxy-threshold N  the N of --syn-proxy 1 (default ${DEFAULT_DEFENSE.synProxyThreshold})
  --expire-nodest-conn 0|1  1: the connections of a real server taken out of scheduling (failed
                    check, maintenance) end at once; 0: they drain (default 0; IPVS's expire_nodest_conn)
  --expire-quiescent-template 0|1  1: persistence no longer sends returning clients to a real
                    server at weight 0 (quiesced, inhibit_on_failure, drained); default 0, as IPVS's
  --keepalived-conf FILE  run the virtual servers, real servers, sorry servers and health checks
                    of a keepalived.conf; the file owns the configuration (lvsd.json is not used,
                    lvsadm may only drain/ready/maint, set weights and zero counters)
  --floating-vips   the VIPs come and go with VRRP (keepalived adds them on the master and
                    removes them on the backup): never answer ARP/ND for a VIP that is not a local
                    address, steer its services present or not (docs/ha.md)
  --restart-hold SECONDS  on SIGTERM/SIGINT, drop the services' traffic for this long at most
                    (0..3600, default ${DEFAULT_RESTART_HOLD_MS / 1000}; 0: none), until the next lvsd takes over
                    the connection table saved in DIR/connections.json (docs/restart.md)
  demo              build a lab in network namespaces and show a director at work (root)
  check-config      read a keepalived.conf, list its services and checkers, exit 1 on errors
Runs in the foreground and logs to stderr. SIGHUP re-reads DIR/lvsd.json (or the keepalived.conf)
and applies what changed;
SIGTERM or SIGINT stop it, handing its connections over to the next lvsd started on DIR.
One lvsd per state directory (DIR/lvsd.lock).
`;

const HOST_REPAIR_INTERVAL_MS = 2000;

interface CommandLine {
  socketPath: string;
  stateDir: string;
  dataplane: boolean;
  dataplaneKind: DataplaneKind;
  http: ListenAddress | null;
  httpTokenFile: string | null;
  connCapacity: number;
  defense: DefenseSettings;
  expiry: ExpirySettings;
  keepalivedConf: string | null;
  floatingVips: boolean;
  restartHoldMs: number;
}

const VALUE_OPTIONS = new Set([
  '--socket',
  '--state-dir',
  '--http',
  '--http-token-file',
  '--conn-capacity',
  '--drop-entry',
  '--secure-tcp',
  '--defense-threshold',
  '--early-drop',
  '--syn-proxy',
  '--syn-proxy-threshold',
  '--expire-nodest-conn',
  '--expire-quiescent-template',
  '--keepalived-conf',
  '--dataplane',
  '--restart-hold',
]);

const EXPIRY_OPTIONS = {
  '--expire-nodest-conn': 'expireNodestConn',
  '--expire-quiescent-template': 'expireQuiescentTemplate',
} as const;

const DEFENSE_OPTIONS = {
  '--drop-entry': 'dropEntry',
  '--secure-tcp': 'secureTcp',
  '--defense-threshold': 'thresholdPercent',
  '--syn-proxy': 'synProxy',
  '--syn-proxy-threshold': 'synProxyThreshold',
} as const;

/** A whole decimal number, or NaN: Number() would take '', '0x10' and '1e3'. */
function decimal(value: string): number {
  return /^\d{1,9}$/.test(value) ? Number(value) : NaN;
}

function usageError(message: string): never {
  process.stderr.write(`lvsd: ${message}\n${USAGE}`);
  process.exit(2);
}

function parseCommandLine(args: string[]): CommandLine {
  let socketPath = process.env.LVSD_SOCKET || DEFAULT_SOCKET_PATH;
  let stateDir = process.env.LVSD_STATE_DIR || DEFAULT_STATE_DIR;
  let dataplane = true;
  let dataplaneKind: DataplaneKind | null = null;
  let http: ListenAddress | null = null;
  let httpTokenFile: string | null = null;
  let connCapacity = DEFAULT_CONN_CAPACITY;
  const defense: Partial<DefenseSettings> = {};
  const expiry: ExpirySettings = { ...DEFAULT_EXPIRY };
  let keepalivedConf: string | null = null;
  let floatingVips = false;
  let restartHoldMs = DEFAULT_RESTART_HOLD_MS;
  for (let i = 0; i < args.length; i++) {
    const [name, inline] = args[i]!.split(/=(.*)/s, 2) as [string, string | undefined];
    if (name === '-h' || name === '--help') {
      process.stdout.write(USAGE);
      process.exit(0);
    }
    if (name === '--no-dataplane' && inline === undefined) {
      dataplane = false;
      continue;
    }
    if (name === '--floating-vips' && inline === undefined) {
      floatingVips = true;
      continue;
    }
    if (!VALUE_OPTIONS.has(name)) usageError(`unknown option ${name}`);
    const value = inline ?? args[++i];
    if (!value) usageError(`${name} needs a value`);
    if (name === '--socket') socketPath = value;
    else if (name === '--state-dir') stateDir = value;
    else if (name === '--keepalived-conf') keepalivedConf = resolve(value);
    else if (name === '--dataplane') {
      if (!DATAPLANE_KINDS.includes(value as DataplaneKind))
        usageError(`--dataplane: ${value} is not ${DATAPLANE_KINDS.join(' or ')}`);
      dataplaneKind = value as DataplaneKind;
    } else if (name === '--http-token-file') httpTokenFile = resolve(value);
    else if (name === '--restart-hold') {
      const seconds = decimal(value);
      if (!(seconds >= 0 && seconds <= 3600))
        usageError(`--restart-hold: ${value} is not a whole number of seconds in 0..3600`);
      restartHoldMs = seconds * 1000;
    } else if (name === '--http') {
      const parsed = parseListenAddress(value);
      if ('error' in parsed) usageError(`--http: ${parsed.error}`);
      http = parsed;
    } else if (name === '--conn-capacity') {
      connCapacity = decimal(value);
      if (!(connCapacity >= 1 && connCapacity <= MAX_CAPACITY)) {
        usageError(`--conn-capacity: ${value} is not a whole number of entries in 1..${MAX_CAPACITY}`);
      }
    } else if (name === '--early-drop') {
      if (value !== 'on' && value !== 'off') usageError(`--early-drop: ${value} is not on or off`);
      defense.earlyDrop = value === 'on';
    } else if (name in EXPIRY_OPTIONS) {
      // As the kernel's sysctls: 0 or 1.
      if (value !== '0' && value !== '1') usageError(`${name}: ${value} is not 0 or 1`);
      expiry[EXPIRY_OPTIONS[name as keyof typeof EXPIRY_OPTIONS]] = value === '1';
    } else {
      const field = DEFENSE_OPTIONS[name as keyof typeof DEFENSE_OPTIONS];
      const change = { [field]: decimal(value) };
      try {
        defenseSettings(change);
      } catch (err) {
        usageError(`${name} ${value}: ${(err as Error).message}`);
      }
      Object.assign(defense, change);
    }
  }
  if (dataplaneKind !== null && !dataplane)
    usageError('--dataplane and --no-dataplane contradict each other');
  if (floatingVips && !dataplane)
    usageError('--floating-vips is about the data plane: not with --no-dataplane');
  if (httpTokenFile && !http) usageError('--http-token-file needs --http');
  return {
    socketPath,
    stateDir,
    dataplane,
    dataplaneKind: dataplaneKind ?? DEFAULT_DATAPLANE,
    http,
    httpTokenFile,
    connCapacity,
    defense: defenseSettings(defense),
    expiry,
    keepalivedConf,
    floatingVips,
    restartHoldMs,
  };
}

/** With the data plane, the director lives in its worker thread; without, in this one. */
async function buildEngine(commandLine: CommandLine): Promise<Engine> {
  const { dataplane, dataplaneKind, stateDir, connCapacity, defense, expiry, floatingVips } = commandLine;
  if (!dataplane) {
    const director = new Director({ clock: { now: () => performance.now() }, connCapacity, defense, expiry });
    return new InProcessEngine(director, { tickIntervalMs: 1000 });
  }
  checkDataplaneCapabilities();
  // The host plumbing is checked and repaired every 2 s (a firewall reload, a device bounced).
  return startDataplaneEngine({
    stateDir,
    connCapacity,
    defense,
    expiry,
    repairIntervalMs: HOST_REPAIR_INTERVAL_MS,
    log: stderrLogger,
    floatingVips,
    kind: dataplaneKind,
  });
}

async function runDaemon(commandLine: CommandLine): Promise<void> {
  const { socketPath, stateDir } = commandLine;
  // Under systemd (Type=notify): READY=1 once lvsadm and the packets are served.
  const notifier = systemdNotifier(process.env, (message) => stderrLogger('warn', message));
  // SIGHUP reloads; one that arrives during start-up is kept for when lvsd is up.
  let daemon: RunningDaemon | null = null;
  let reloadPending = false;
  const keepalived = commandLine.keepalivedConf
    ? keepalivedSource(commandLine.keepalivedConf, forwardingOf(commandLine))
    : null;
  const reload = async (running: RunningDaemon): Promise<void> => {
    notifier.notify({ ...reloadingFields(process.hrtime.bigint()), STATUS: 'reloading' });
    const result = await running.reload();
    notifier.notify({
      READY: '1',
      STATUS: result.ok
        ? `running; reloaded (${result.changes} changes)`
        : 'running; the last reload was refused, nothing was changed',
    });
  };
  process.on('SIGHUP', () => {
    if (daemon) void reload(daemon);
    else reloadPending = true;
  });
  try {
    // A keepalived.conf with errors stops lvsd before it touches anything.
    keepalived?.check();
    daemon = await startDaemon({
      socketPath,
      stateDir,
      createEngine: () => buildEngine(commandLine),
      log: stderrLogger,
      restart: { holdMs: commandLine.restartHoldMs },
      ...(keepalived
        ? {
            configOwner: keepalived.name,
            reloadHooks: [keepalived],
            annotateSnapshot: (snapshot: Snapshot) => keepalived.annotate(snapshot),
          }
        : {}),
    });
  } catch (err) {
    const lines = (err as Error).message.split('\n');
    // Those two already say what stopped lvsd, naming the file.
    if (!(err instanceof StateFileError || err instanceof StateLockError))
      lines[0] = `cannot start: ${lines[0]}`;
    for (const line of lines) stderrLogger('error', line);
    notifier.notify({ STATUS: `cannot start: ${lines[0]}` });
    process.exit(1);
  }
  const running = daemon;
  if (keepalived) {
    try {
      await keepalived.start(running.service);
    } catch (err) {
      await running.close();
      for (const line of (err as Error).message.split('\n')) stderrLogger('error', line);
      process.exit(1);
    }
  }
  // The services are in (lvsd.json's, or the keepalived.conf's): the previous run's connections next.
  await running.takeOver();
  let http: HttpListener | null = null;
  if (commandLine.http) {
    try {
      const tokenFile = commandLine.httpTokenFile ? await readTokenFile(commandLine.httpTokenFile) : null;
      if (tokenFile?.warning) stderrLogger('warn', `http: ${tokenFile.warning}`);
      http = await startHttpListener({
        address: commandLine.http,
        api: running.service,
        build: await readBuildInfo(),
        log: stderrLogger,
        token: tokenFile?.token ?? null,
        onEngineEvent: (listener) => running.engine.onEvent(listener),
      });
    } catch (err) {
      await running.close();
      stderrLogger('error', `cannot start: ${(err as Error).message}`);
      process.exit(1);
    }
  }
  const stop = (signal: string) => {
    stderrLogger('info', `${signal} received, shutting down`);
    notifier.notify({ STOPPING: '1', STATUS: `${signal} received, shutting down` });
    // A stop by signal may be a restart (systemctl restart, an upgrade): hand the connections over.
    void Promise.all([http?.close(), keepalived?.close(), running.close({ handOver: true })]).then(() =>
      process.exit(0),
    );
  };
  running.engine.onEvent((event) => {
    if (event.kind === 'exception') {
      stderrLogger('error', `packet path exception #${event.count} (packet dropped): ${event.message}`);
      return;
    }
    // The sync daemons take these (ControlService).
    if (event.kind === 'sync') return;
    // Serving lvsadm with no data plane would look healthy while nothing is forwarded: stop,
    // non-zero, so that systemd restarts lvsd.
    stderrLogger('error', `${event.reason}; shutting down`);
    notifier.notify({ STOPPING: '1', STATUS: `${event.reason}; shutting down` });
    void Promise.all([keepalived?.close(), running.close()]).then(() => process.exit(1));
  });
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  const serving = [
    commandLine.dataplane ? 'moving packets' : 'no data plane',
    keepalived ? `configuration from ${commandLine.keepalivedConf}` : null,
    commandLine.http ? 'metrics on --http' : null,
  ].filter(Boolean);
  notifier.notify({ READY: '1', STATUS: `running: ${serving.join(', ')}` });
  if (reloadPending) void reload(running);
}

/**
 * The forwarding methods the chosen data plane delivers (the worker's director refuses the
 * others); null without one: a configuration-only lvsd keeps whatever the core can do.
 */
function forwardingOf(commandLine: CommandLine): ForwardingCapability | null {
  return commandLine.dataplane ? DATAPLANE_FORWARDING[commandLine.dataplaneKind] : null;
}

function keepalivedSource(file: string, forwarding: ForwardingCapability | null): KeepalivedSource {
  const configId = defaultConfigId();
  return new KeepalivedSource({
    file,
    read: () => readKeepalivedConf(fileSystemConfigFiles, file, { configId }),
    log: stderrLogger,
    forwarding,
  });
}

const args = process.argv.slice(2);
if (args[0] === 'check-config') {
  const { runCheckConfig } = await import('./check-config.js');
  process.exitCode = runCheckConfig(args.slice(1));
} else if (args[0] === 'demo') {
  const { runDemo } = await import('../demo/demo.js');
  process.exit(await runDemo(args.slice(1)));
} else {
  await runDaemon(parseCommandLine(args));
}
