// Waits with a timer, so that a lost event fails the one wait that lost it,
// with its name, instead of hanging the test until the runner's timeout.

/** `promise`, or a rejection naming `what` once `ms` have passed without it settling. */
export function within<T>(promise: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    // A pending wait must not keep the test process alive once the tests are done.
    timer.unref();
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/**
 * Waits for `total` pieces of work that report through `settled()` (the
 * count done so far). Fails only when none has finished for `stallMs`: a
 * slow machine takes longer, a lost one stops the count.
 */
export async function progressing(what: string, total: number, settled: () => number | Promise<number>, stallMs = 60_000): Promise<void> {
  let last = -1;
  let lastChange = performance.now();
  for (;;) {
    const done = await settled();
    if (done >= total) return;
    if (done !== last) {
      last = done;
      lastChange = performance.now();
    } else if (performance.now() - lastChange > stallMs) {
      throw new Error(`${what}: stuck at ${done} of ${total}, none for ${stallMs / 1000} s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * How long a program the tests start (the server, redis-server, mariadbd,
 * coturn, Chromium) may take to be ready. One that fails exits and is seen at
 * once; this only ends a wait on one that hangs, so it is generous: on a busy
 * machine starting node with tsx alone can take tens of seconds.
 */
export const STARTUP_MS = 120_000;

/** Polls `check` every `everyMs` until it gives a value; fails naming `what` once `ms` have passed without one. */
export async function until<T>(what: string, check: () => T | undefined | Promise<T | undefined>, ms = 10_000, everyMs = 50): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Polls `check` until it holds (server-side state follows socket events asynchronously). */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, ms = 10_000, everyMs = 25): Promise<void> {
  await until(what, async () => ((await check()) ? true : undefined), ms, everyMs);
}
