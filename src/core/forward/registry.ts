// Forwarding methods plug in by name, as schedulers do; each gets a small id that a connection
// stores (one byte per entry) to name the method bound to it at creation.

import { ErrorCodes, LvsError } from '../errors.js';
import type { ForwardMethod } from '../model.js';
import type { ForwardingMethod } from './types.js';

const byId: ForwardingMethod[] = [];
const ids = new Map<ForwardMethod, number>();

export function registerForwardingMethod(method: ForwardingMethod): void {
  if (ids.has(method.name)) {
    throw new LvsError(ErrorCodes.INVALID, `forwarding method ${method.name} already exists`);
  }
  ids.set(method.name, byId.length);
  byId.push(method);
}

/** The id a connection stores for `name`, or -1 when lvsd cannot forward that way. */
export function forwardingMethodId(name: ForwardMethod): number {
  return ids.get(name) ?? -1;
}

export function forwardingMethodById(id: number): ForwardingMethod {
  return byId[id]!;
}

export function forwardingMethodNames(): ForwardMethod[] {
  return [...ids.keys()];
}
