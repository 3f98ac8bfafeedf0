// Composition root: read the configuration, build the server, listen, and
// shut down cleanly on pm2's signals.
import 'dotenv/config';
import { createServer } from './app';
import { ConfigError, DEV_STATIC_TOKEN, loadConfig, type Config } from './config';

function startupLine(config: Config, port: number, secure: boolean): string {
  const url = `${secure ? 'wss' : 'ws'}://localhost:${port}/`;
  const mode = config.production ? 'production' : 'development';
  const token =
    config.staticToken === DEV_STATIC_TOKEN ? `, static token "${DEV_STATIC_TOKEN}"; set STATIC_TOKEN to change it` : '';
  return `VideoWhisper WebRTC signaling on ${url} (${mode} mode${token})`;
}

async function main() {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`Configuration error: ${err.message}`);
    process.exit(1);
  }
  const server = createServer(config);
  const { log } = server;
  process.on('unhandledRejection', (reason) => log.error({ err: reason }, 'unhandled rejection (the server goes on)'));
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception, exiting');
    process.exit(1);
  });

  const port = await server.listen().catch((err: NodeJS.ErrnoException) => {
    log.fatal({ err: err.message, port: config.port }, 'cannot listen');
    process.exit(1);
  });
  if (!server.secure && config.production) log.warn('CERTIFICATE is not set: serving plain HTTP/WS (use it locally or behind a TLS proxy)');
  // pm2 cluster mode sets NODE_APP_INSTANCE in every process: without Redis they would not share state.
  if (process.env.NODE_APP_INSTANCE !== undefined && process.env.exec_mode === 'cluster_mode' && !config.redisUrl)
    log.warn('pm2 cluster mode without REDIS_URL: each process has its own channels and limits');
  if (config.production && !config.apiKey) log.warn('API_KEY is not set: the REST API refuses every keyed request');
  log.info(startupLine(config, port, server.secure));
  process.send?.('ready');

  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      log.warn('shutdown took too long, exiting');
      process.exit(0);
    }, config.shutdownTimeoutMs + config.shutdownGraceMs);
    timer.unref();
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  // SIGHUP reloads accounts, like GET /update-accounts.
  process.on('SIGHUP', () => {
    void server.accounts.reload().then((result) => log.info({ ...result, signal: 'SIGHUP' }, 'accounts reloaded on signal'));
  });
}

void main();
