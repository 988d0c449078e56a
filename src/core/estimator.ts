// Rate estimation as the kernel's ip_vs_est.c: every 2 s each counter's growth is folded into
// a moving average with weight 1/4, kept as scaled integers (per-second rates times 2^10 for
// connections and packets, 2^5 for bytes) and rounded when read. Driven by tick(now).

import { COUNTERS, type Rates, type Stats } from './model.js';

export const ESTIMATOR_INTERVAL_MS = 2000;
/** After this many missed intervals the old average has decayed to nothing ((3/4)^32 < 1e-4). */
const MAX_CATCH_UP = 32;

/** What owns a Stats and shows its rates: a service or a real server. */
export interface RatesOwner {
  rates: Rates;
}

const RATES = ['cps', 'inpps', 'outpps', 'inbps', 'outbps'] as const;
// A 2 s delta scaled to a per-second rate: <<9 (2^10 / 2) for counts, <<4 (2^5 / 2) for bytes.
const DELTA_SCALE = [512, 512, 512, 16, 16];
const READ_SCALE = [1024, 1024, 1024, 32, 32];

interface Estimate {
  readonly owner: RatesOwner;
  /** The counters at the last sample, in Stats.words' layout. */
  readonly last: Uint32Array;
  readonly scaled: Float64Array;
}

export class Estimator {
  private readonly estimates = new Map<Stats, Estimate>();
  private nextSampleAt: number | null = null;

  /** Starts estimating `stats`; its rates are written to `owner.rates` on every sample. */
  add(stats: Stats, owner: RatesOwner): void {
    const estimate = {
      owner,
      last: new Uint32Array(COUNTERS.length * 2),
      scaled: new Float64Array(RATES.length),
    };
    this.estimates.set(stats, estimate);
    this.rebase(stats, estimate);
  }

  remove(stats: Stats): void {
    this.estimates.delete(stats);
  }

  /** After the counters were zeroed: start again from them, with zero rates (ip_vs_zero_estimator). */
  reset(stats: Stats): void {
    const estimate = this.estimates.get(stats);
    if (estimate) this.rebase(stats, estimate);
  }

  /** Samples every estimate once per 2 s elapsed since the last sample. */
  tick(now: number): void {
    if (this.nextSampleAt === null) {
      this.nextSampleAt = now + ESTIMATOR_INTERVAL_MS;
      return;
    }
    if (now < this.nextSampleAt) return;
    const intervals = Math.floor((now - this.nextSampleAt) / ESTIMATOR_INTERVAL_MS) + 1;
    this.nextSampleAt += intervals * ESTIMATOR_INTERVAL_MS;
    for (const [stats, estimate] of this.estimates) this.sample(stats, estimate, intervals);
  }

  private sample(stats: Stats, estimate: Estimate, intervals: number): void {
    const { last, scaled } = estimate;
    const growths = COUNTERS.map((_, i) => growth(stats.words, last, i));
    // Counters that went backwards were zeroed behind our back: no rate can be read from them.
    if (growths.includes(null)) {
      this.rebase(stats, estimate);
      return;
    }
    last.set(stats.words);
    const steps = Math.min(intervals, MAX_CATCH_UP);
    growths.forEach((grown, i) => {
      // Growth over several intervals is spread evenly across them.
      const rate = Math.floor((grown! * DELTA_SCALE[i]!) / intervals);
      let value = scaled[i]!;
      for (let step = 0; step < steps; step++) value += Math.floor((rate - value) / 4);
      scaled[i] = value;
    });
    this.publish(estimate);
  }

  private rebase(stats: Stats, estimate: Estimate): void {
    estimate.last.set(stats.words);
    estimate.scaled.fill(0);
    this.publish(estimate);
  }

  private publish({ owner, scaled }: Estimate): void {
    const rates = owner.rates;
    RATES.forEach((name, i) => {
      const scale = READ_SCALE[i]!;
      // Rounded half up, as the kernel's (x + scale/2 - 1) >> bits.
      rates[name] = Math.floor((scaled[i]! + scale / 2 - 1) / scale);
    });
  }
}

/**
 * How much counter i grew since `last`, modulo 2^64 as the kernel's u64 subtraction (so a wrap
 * is growth); null when it went back, which shows as a difference of 2^63 or more.
 */
function growth(words: Uint32Array, last: Uint32Array, i: number): number | null {
  const low = 2 * i;
  const borrow = words[low]! < last[low]! ? 1 : 0;
  const high = (words[low + 1]! - last[low + 1]! - borrow) >>> 0;
  if (high >= 0x8000_0000) return null;
  return high * 0x1_0000_0000 + ((words[low]! - last[low]!) >>> 0);
}
