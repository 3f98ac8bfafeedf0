// Structured logs: JSON lines in production, readable lines in development.
// Secrets are redacted outside development mode. Lines carry the level's
// name and an ISO time, which log tools and people read without a table.
import pino, { type DestinationStream, type Logger } from 'pino';
import type Pretty from 'pino-pretty';

export const SECRET_PATHS = ['token', 'apiKey', 'apikey', 'secret', 'password', 'credential', 'auth.token', '*.token', '*.credential'];

export function createLogger(options: { production: boolean; level: string }, destination?: DestinationStream): Logger {
  const stream =
    destination ??
    (!options.production
      ? // Loaded in development only: production never needs its 1 MiB of heap.
        // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy load
        (require('pino-pretty') as typeof Pretty)({ sync: true, ignore: 'pid,hostname' })
      : // pm2 cluster workers' logs reach pm2 only through process.stdout.write, not file descriptor 1.
        process.env.exec_mode === 'cluster_mode'
        ? process.stdout
        : pino.destination({ sync: false }));
  return pino(
    {
      level: options.level,
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
      base: options.production ? { pid: process.pid } : undefined,
      redact: options.production ? { paths: SECRET_PATHS, censor: '[secret]' } : undefined,
    },
    stream,
  );
}
