// Log lines about refused and dropped events, sampled: a client that floods
// bad events would otherwise write as fast as it sends. Each socket gets at
// most one such line a second, and the server at most `perSecond`; the lines
// left out are counted, and the count goes out with the socket's next line.
import type { Logger } from 'pino';
import type { Clock } from '../clock';
import { takeEvent } from './rate-limits';
import type { SocketData } from './session';

export function createSampledLog(log: Logger, clock: Clock, perSecond = 50) {
  const server = { tokens: perSecond, refilledAt: clock.monotonic() };
  return (
    socket: { data: Pick<SocketData, 'loggedAt' | 'unlogged'> },
    level: 'info' | 'warn',
    fields: () => Record<string, unknown>,
    msg: string,
  ): void => {
    if (!log.isLevelEnabled(level)) return;
    const data = socket.data;
    const now = clock.monotonic();
    if (now - data.loggedAt < 1000 || !takeEvent(server, perSecond, now)) {
      data.unlogged++;
      return;
    }
    data.loggedAt = now;
    const unlogged = data.unlogged;
    data.unlogged = 0;
    log[level](unlogged ? { ...fields(), unlogged } : fields(), msg);
  };
}
