// An event the server could not handle: told apart as a registry outage
// (Redis away or slow: expected now and then, a warning) or a bug (an error,
// with its stack), in the log and in the metrics. Either way the client is
// answered by the caller; this only records it.
import type { Logger } from 'pino';
import { RegistryUnavailableError } from '../channels/registry';
import type { FailureCause, Telemetry } from '../metrics';

export const failureCause = (err: unknown): FailureCause => (err instanceof RegistryUnavailableError ? 'registryUnavailable' : 'bug');

/** Records a failure of `what` (an event, a disconnect, counting a refusal); returns its cause. */
export type RecordFailure = (what: string, fields: Record<string, unknown>, err: unknown) => FailureCause;

export function createFailureLog({ log, telemetry }: { log: Logger; telemetry: Pick<Telemetry, 'failed'> }): RecordFailure {
  return (what, fields, err) => {
    const cause = failureCause(err);
    telemetry.failed(cause);
    // An outage says what it is in one line; a stack would only repeat it for every event.
    if (cause === 'registryUnavailable') log.warn({ ...fields, err: (err as Error).message }, `${what}: registry unavailable`);
    else log.error({ ...fields, err }, `${what} failed`);
    return cause;
  };
}
