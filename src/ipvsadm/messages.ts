// libipvs's ipvs_strerror(): the director's refusal codes become the errno the kernel would
// return, then the text libipvs prints for that errno in that call, else strerror().

import { ErrorCodes } from '../core/errors.js';
import type { ControlOp } from '../core/ops.js';

/** What the refused call was, in libipvs's terms (its ipvs_func). */
export type RefusedCall = ControlOp['op'] | 'start-daemon' | 'stop-daemon' | 'get-service';

type Errno =
  'EEXIST' | 'ENOENT' | 'ESRCH' | 'EINVAL' | 'ERANGE' | 'EAFNOSUPPORT' | 'ENOMEM' | 'EPERM' | 'ENODEV';

const ERRNO_OF_CODE: Record<string, Errno> = {
  [ErrorCodes.SERVICE_EXISTS]: 'EEXIST',
  [ErrorCodes.DEST_EXISTS]: 'EEXIST',
  [ErrorCodes.SCHEDULER_EXISTS]: 'EEXIST',
  [ErrorCodes.DAEMON_RUNNING]: 'EEXIST',
  [ErrorCodes.NO_SERVICE]: 'ESRCH',
  [ErrorCodes.SERVICE_NOT_DEFINED]: 'ESRCH',
  [ErrorCodes.NO_DAEMON]: 'ESRCH',
  [ErrorCodes.NO_DEST]: 'ENOENT',
  [ErrorCodes.NO_SCHEDULER]: 'ENOENT',
  [ErrorCodes.INVALID]: 'EINVAL',
  [ErrorCodes.OUT_OF_RANGE]: 'ERANGE',
  [ErrorCodes.AF_NOT_SUPPORTED]: 'EAFNOSUPPORT',
  [ErrorCodes.TABLE_FULL]: 'ENOMEM',
  [ErrorCodes.NO_DEVICE]: 'ENODEV',
};

const PER_CALL: Partial<Record<RefusedCall, Partial<Record<Errno, string>>>> = {
  'add-service': { EEXIST: 'Service already exists', ENOENT: 'Scheduler or persistence engine not found' },
  'edit-service': { ESRCH: 'No such service', ENOENT: 'Scheduler or persistence engine not found' },
  'delete-service': { ESRCH: 'No such service' },
  zero: { ESRCH: 'No such service' },
  'get-service': { ESRCH: 'No such service' },
  'add-dest': { ESRCH: 'Service not defined', EEXIST: 'Destination already exists' },
  'edit-dest': { ESRCH: 'Service not defined', ENOENT: 'No such destination' },
  'delete-dest': { ESRCH: 'Service not defined', ENOENT: 'No such destination' },
  'set-dest-runtime': { ESRCH: 'Service not defined', ENOENT: 'No such destination' },
  'start-daemon': { EEXIST: 'Daemon has already run' },
  'stop-daemon': { ESRCH: 'No daemon is running' },
};

const ANY_CALL: Partial<Record<Errno, string>> = {
  EPERM: 'Permission denied (you must be root)',
  EINVAL: 'Invalid operation.  Possibly wrong module version, address not unicast, ...',
  ENOMEM: 'Memory allocation problem',
  EAFNOSUPPORT: 'Operation not supported with specified address family',
};

const STRERROR: Record<Errno, string> = {
  EEXIST: 'File exists',
  ENOENT: 'No such file or directory',
  ESRCH: 'No such process',
  EINVAL: 'Invalid argument',
  ERANGE: 'Numerical result out of range',
  EAFNOSUPPORT: 'Address family not supported by protocol',
  ENOMEM: 'Cannot allocate memory',
  EPERM: 'Operation not permitted',
  ENODEV: 'No such device',
};

/** Exit status of a command the director refused: ipvsadm's main returns -1. */
export const REFUSED_EXIT = 255;
/** Exit status of ipvsadm's fail(): bad syntax or values, and "cannot reach" (as "Can't initialize ipvs"). */
export const FAIL_EXIT = 2;
/** Exit status of a listing that cannot be produced (ipvsadm's list_* exit(1)). */
export const LIST_EXIT = 1;

/** The line ipvsadm prints for a refusal; unknown codes print the daemon's own message. */
export function refusalMessage(call: RefusedCall, code: string, fallback: string): string {
  const errno = ERRNO_OF_CODE[code];
  if (!errno) return fallback;
  return PER_CALL[call]?.[errno] ?? ANY_CALL[errno] ?? STRERROR[errno];
}

export function unreachableMessage(socketPath: string, reason: string): string {
  return `lvsadm: cannot reach lvsd at ${socketPath}: ${reason} (is it running? start it with: lvsd --socket ${socketPath})`;
}
