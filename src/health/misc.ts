// MISC_CHECK (keepalived check_misc.c): run a script in its own process group; exit 0 is up, 1 is
// down, and with misc_dynamic 2..255 is up with weight status - 2 (0 restores the configured
// weight). At misc_timeout the whole group gets SIGTERM and, 2 s later, SIGKILL, as keepalived
// does. stdout goes to /dev/null; the first bytes of stderr are kept for the reason, the rest is
// read and dropped, so a flooding script neither blocks nor grows memory.

import { spawn } from 'node:child_process';
import koffi from 'koffi';
import { ErrorCodes, LvsError } from '../core/errors.js';
import type { CheckerConfig } from './config.js';
import { registerChecker, result, settleOnce, type Checker } from './checker.js';

type MiscConfig = Extract<CheckerConfig, { kind: 'MISC_CHECK' }>;

const STDERR_KEPT = 200;
/** keepalived's pause between SIGTERM and SIGKILL. */
export const KILL_GRACE_MS = 2000;

const libc = koffi.load('libc.so.6');
const Passwd = koffi.struct('passwd_hc', {
  pw_name: 'char *',
  pw_passwd: 'char *',
  pw_uid: 'uint32_t',
  pw_gid: 'uint32_t',
});
const Group = koffi.struct('group_hc', { gr_name: 'char *', gr_passwd: 'char *', gr_gid: 'uint32_t' });
const getpwnam = libc.func('getpwnam', koffi.pointer(Passwd), ['const char *']);
const getgrnam = libc.func('getgrnam', koffi.pointer(Group), ['const char *']);

/**
 * user [group] as uid and gid (the user's own group unless one is named); null user: lvsd's own.
 * Refused (LvsError, naming `what`) when unknown.
 */
export function scriptCredentials(
  what: string,
  user: string | null,
  group: string | null,
): { uid: number; gid: number } | null {
  if (user === null) return null;
  const pw = getpwnam(user);
  if (!pw) throw new LvsError(ErrorCodes.INVALID, `${what} user ${user}: no such user`);
  const { pw_uid: uid, pw_gid: userGid } = koffi.decode(pw, Passwd) as { pw_uid: number; pw_gid: number };
  if (group === null) return { uid, gid: userGid };
  const gr = getgrnam(group);
  if (!gr) throw new LvsError(ErrorCodes.INVALID, `${what} group ${group}: no such group`);
  return { uid, gid: (koffi.decode(gr, Group) as { gr_gid: number }).gr_gid };
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already.
  }
}

export function miscChecker(config: MiscConfig): Checker {
  if (config.argv.length === 0) throw new LvsError(ErrorCodes.INVALID, 'MISC_CHECK needs a misc_path');
  const ids = scriptCredentials('MISC_CHECK', config.user, config.group);
  return {
    kind: config.kind,
    timeoutMs: config.timeoutMs,
    check: (attempt) => {
      let exited = false;
      return settleOnce(
        attempt,
        (t0) => result(t0, false, 'PROCTOUT', `no exit within ${config.timeoutMs} ms`),
        (finish, t0) => {
          const child = spawn(config.argv[0]!, config.argv.slice(1), {
            detached: true,
            stdio: ['ignore', 'ignore', 'pipe'],
            ...(ids ?? {}),
          });
          let stderr = '';
          child.stderr!.on('data', (chunk: Buffer) => {
            if (stderr.length < STDERR_KEPT) stderr += chunk.toString('utf8', 0, STDERR_KEPT - stderr.length);
          });
          const said = () => (stderr.trim() ? `: ${stderr.trim().split('\n')[0]}` : '');
          child.once('error', (error) => {
            exited = true;
            finish(result(t0, false, 'PROCERR', `cannot run ${config.argv[0]}: ${error.message}`));
          });
          child.once('exit', (code, signal) => {
            exited = true;
            if (signal !== null) return finish(result(t0, false, 'PROCERR', `killed by ${signal}${said()}`));
            if (code === 0)
              return finish(
                result(t0, true, 'PROCOK', 'exit status 0', config.dynamic ? 'configured' : undefined),
              );
            if (config.dynamic && code !== null && code >= 2)
              return finish(result(t0, true, 'PROCOK', `exit status ${code}: weight ${code - 2}`, code - 2));
            finish(result(t0, false, 'PROCERR', `exit status ${code}${said()}`));
          });
          return () => {
            child.stderr?.destroy();
            if (exited || child.pid === undefined) return;
            const pid = child.pid;
            killGroup(pid, 'SIGTERM');
            const force = setTimeout(() => killGroup(pid, 'SIGKILL'), KILL_GRACE_MS);
            force.unref();
            child.once('exit', () => {
              clearTimeout(force);
              // Whatever the script left behind in its group goes with it.
              killGroup(pid, 'SIGKILL');
            });
          };
        },
      );
    },
  };
}

registerChecker({ kinds: ['MISC_CHECK'], create: miscChecker });
