// A hashed timer wheel over entry indexes: each slot heads a doubly linked list kept in typed
// arrays, so a million timers cost 8 bytes each and no timer objects. Entries are filed by their
// expiry tick; one that is filed early (its expiry moved later) is simply refiled when its slot
// comes round, which keeps re-arming on the packet path to a single store in the caller.

const NIL = -1;
// A list head's prev names its slot instead, so removal never searches the slots.
const headMark = (slot: number) => -2 - slot;

export class TimerWheel {
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  private readonly heads: Int32Array;
  private readonly mask: number;
  /** First tick whose slot has not been fully visited. */
  private nextTick: number;

  constructor(
    capacity: number,
    private readonly tickMs: number,
    slots: number,
    startMs: number,
  ) {
    if (slots & (slots - 1)) throw new RangeError('timer wheel slots must be a power of two');
    this.next = new Int32Array(capacity);
    this.prev = new Int32Array(capacity);
    this.heads = new Int32Array(slots).fill(NIL);
    this.mask = slots - 1;
    this.nextTick = Math.floor(startMs / tickMs);
  }

  /** Files `id` (not currently filed) under the tick of `expiryMs`. */
  insert(id: number, expiryMs: number): void {
    // Anything already due goes to the first slot still to be visited.
    const tick = Math.max(Math.floor(expiryMs / this.tickMs), this.nextTick);
    const slot = tick & this.mask;
    const head = this.heads[slot]!;
    this.next[id] = head;
    this.prev[id] = headMark(slot);
    if (head !== NIL) this.prev[head] = id;
    this.heads[slot] = id;
  }

  remove(id: number): void {
    const before = this.prev[id]!;
    const after = this.next[id]!;
    if (before >= 0) this.next[before] = after;
    else this.heads[headMark(before)] = after;
    if (after !== NIL) this.prev[after] = before;
  }

  /**
   * Visits every filed entry that may be due at `nowMs`, each detached from the wheel: `visit`
   * must re-insert it or drop it, and must not remove other filed entries. The current tick's slot
   * is visited again on the next call, since entries later in this tick are not due yet.
   */
  advance(nowMs: number, visit: (id: number) => void): void {
    const nowTick = Math.floor(nowMs / this.tickMs);
    if (nowTick < this.nextTick) return;
    // After a long pause every slot is visited once, not once per elapsed tick.
    const first = Math.max(this.nextTick, nowTick - this.mask);
    for (let tick = first; tick <= nowTick; tick++) {
      const slot = tick & this.mask;
      let id = this.heads[slot]!;
      this.heads[slot] = NIL;
      while (id !== NIL) {
        const following = this.next[id]!;
        visit(id);
        id = following;
      }
    }
    this.nextTick = nowTick;
  }

  clear(): void {
    this.heads.fill(NIL);
  }
}
