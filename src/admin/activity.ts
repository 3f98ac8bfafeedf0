// What the console counts between samples: handshakes and refusals (by
// reason, and by account for plan refusals). Fed by the telemetry calls
// signaling already makes, and by server events.
import { REFUSAL_REASONS, type RefusalReason, type Telemetry } from '../metrics';
import type { ServerEvents } from '../server-events';

export interface Activity {
  /** Telemetry that also counts here. */
  tee(telemetry: Telemetry): Telemetry;
  /** Refusals by reason since start. */
  refusals(): Record<RefusalReason, number>;
  /** Counts an accepted connection of `account`. */
  connected(account: string): void;
  /** Handshakes and refusals since the last call (in total and per account). */
  take(): { handshakes: number; refusals: number; handshakesByAccount: Map<string, number>; refusalsByAccount: Map<string, number> };
  close(): void;
}

export function createActivity(events: ServerEvents): Activity {
  const byReason = Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as Record<RefusalReason, number>;
  let handshakes = 0;
  let refusals = 0;
  let refusalsByAccount = new Map<string, number>();
  let handshakesByAccount = new Map<string, number>();
  const unsubscribe = events.subscribe((event) => {
    if (event.type !== 'refused' || !event.account) return;
    refusalsByAccount.set(event.account, (refusalsByAccount.get(event.account) ?? 0) + 1);
  });
  return {
    tee: (telemetry) => ({
      ...telemetry,
      refused(reason) {
        byReason[reason]++;
        refusals++;
        telemetry.refused(reason);
      },
      handshake(seconds, outcome) {
        if (outcome === 'accepted') handshakes++;
        telemetry.handshake(seconds, outcome);
      },
    }),
    refusals: () => ({ ...byReason }),
    connected(account) {
      handshakesByAccount.set(account, (handshakesByAccount.get(account) ?? 0) + 1);
    },
    take() {
      const taken = { handshakes, refusals, handshakesByAccount, refusalsByAccount };
      handshakes = 0;
      refusals = 0;
      handshakesByAccount = new Map();
      refusalsByAccount = new Map();
      return taken;
    },
    close: unsubscribe,
  };
}
