// Structured logs: JSON lines in production, readable lines in development.
// Secrets are redacted outside development mode. Lines carry the level's
// name and an ISO time, which log tools and people read without a table.
import pino, { type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';

export const SECRET_PATHS = ['token', 'apiKey', 'apikey', 'secret', 'password', 'credential', 'auth.token', '*.token', '*.credential'];

export function createLogger(
  options: { production: boolean; level: string },
  destination?: DestinationStream,
): Logger {
  const stream =
    destination ?? (options.production ? pino.destination({ sync: false }) : pretty({ sync: true, ignore: 'pid,hostname' }));
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
