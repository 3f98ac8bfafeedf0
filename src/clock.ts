/**
 * Time, as the server reads it. Injected through the server's dependencies so
 * that tests move time forward instead of sleeping or replacing `Date.now`.
 */
export interface Clock {
  /** Wall-clock milliseconds since the epoch: for times that leave the process (expiry, timestamps). */
  now(): number;
  /** Monotonic milliseconds: for durations and rates, which an NTP step must not move. */
  monotonic(): number;
}

export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  monotonic: () => performance.now(),
});
