// One task that compares the whole of an instance's part of Redis (a sync, a
// restore) runs alone: the calls that change that part wait while it runs,
// and it waits for the calls in flight.

export interface ExclusiveGate {
  /** Runs a call; waits while an exclusive task runs. */
  shared<T>(task: () => Promise<T>): Promise<T>;
  /** Runs a task once no call is in flight; calls that come meanwhile wait for it. */
  exclusive<T>(task: () => Promise<T>): Promise<T>;
}

export function createExclusiveGate(): ExclusiveGate {
  let inFlight = 0;
  let idle: (() => void) | undefined;
  let gate: Promise<void> | undefined;

  return {
    async shared(task) {
      while (gate) await gate;
      inFlight++;
      try {
        return await task();
      } finally {
        if (--inFlight === 0) idle?.();
      }
    },

    async exclusive(task) {
      while (gate) await gate;
      let open = () => {};
      gate = new Promise<void>((resolve) => (open = resolve));
      try {
        if (inFlight > 0) await new Promise<void>((resolve) => (idle = resolve));
        return await task();
      } finally {
        idle = undefined;
        gate = undefined;
        open();
      }
    },
  };
}
