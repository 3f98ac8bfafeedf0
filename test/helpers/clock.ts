import type { Clock } from '../../src/clock';

/** A clock that moves only when a test moves it. */
export interface ManualClock extends Clock {
  /** Moves both readings forward by `ms`. */
  advance(ms: number): void;
  /** Steps the wall clock alone (an NTP correction); the monotonic reading stays. */
  stepWall(ms: number): void;
}

export function manualClock(startWall = Date.UTC(2026, 0, 1), startMonotonic = 1_000): ManualClock {
  let wall = startWall;
  let monotonic = startMonotonic;
  return {
    now: () => wall,
    monotonic: () => monotonic,
    advance(ms) {
      wall += ms;
      monotonic += ms;
    },
    stepWall(ms) {
      wall += ms;
    },
  };
}
