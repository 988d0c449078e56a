// Every refusal of the control path carries a stable code. The CLI maps codes to ipvsadm's
// messages and exit statuses; the daemon's API carries the code itself.

export const ErrorCodes = {
  /** add-service on a service that exists (kernel EEXIST). */
  SERVICE_EXISTS: 'LVS_ERR_SERVICE_EXISTS',
  /** edit/delete/zero of a service that does not exist (ESRCH). */
  NO_SERVICE: 'LVS_ERR_NO_SERVICE',
  /** a real-server command against a missing service (ESRCH on dest ops). */
  SERVICE_NOT_DEFINED: 'LVS_ERR_SERVICE_NOT_DEFINED',
  /** add-server of a destination already present (EEXIST). */
  DEST_EXISTS: 'LVS_ERR_DEST_EXISTS',
  /** edit/delete of a destination that is not there (ENOENT). */
  NO_DEST: 'LVS_ERR_NO_DEST',
  /** unknown scheduler or persistence engine (ENOENT on add-service). */
  NO_SCHEDULER: 'LVS_ERR_NO_SCHEDULER',
  /** a scheduler registered twice. */
  SCHEDULER_EXISTS: 'LVS_ERR_SCHEDULER_EXISTS',
  /** values the kernel refuses with EINVAL (bad flags, address not unicast, ...). */
  INVALID: 'LVS_ERR_INVALID',
  /** a lower connection threshold above the upper one (ERANGE), checked before the real server's lookup. */
  OUT_OF_RANGE: 'LVS_ERR_OUT_OF_RANGE',
  /** address families mixed where only tunnels allow it (EAFNOSUPPORT). */
  AF_NOT_SUPPORTED: 'LVS_ERR_AF_NOT_SUPPORTED',
  /** a forwarding method lvsd cannot carry out yet (direct routing, tunnelling). */
  METHOD_UNSUPPORTED: 'LVS_ERR_METHOD_UNSUPPORTED',
  /** the host refused the steering a change needs (nft or ip failed); the change was not made. */
  HOST_REFUSED: 'LVS_ERR_HOST_REFUSED',
  /** the connection table is full. */
  TABLE_FULL: 'LVS_ERR_TABLE_FULL',
  /** a sync daemon is already running / none is running. */
  DAEMON_RUNNING: 'LVS_ERR_DAEMON_RUNNING',
  NO_DAEMON: 'LVS_ERR_NO_DAEMON',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class LvsError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LvsError';
    this.code = code;
  }
}

export function isLvsError(value: unknown): value is LvsError {
  return value instanceof LvsError;
}
