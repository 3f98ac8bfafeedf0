// Composition root: read the configuration (the environment, then `.env`,
// read here at every start so that `pm2 restart` applies an edited file),
// build the server, listen, and shut down cleanly on pm2's signals.
import 'dotenv/config';
import { createServer, type SignalingServerHandle } from './app';
import { describeCertificate } from './served-certificate';
import { systemClock } from './clock';
import { ConfigError, DEV_STATIC_TOKEN, loadConfig, type Config } from './config';
import { CertificateError, publicName } from './tls';

/** A certificate this close to its expiry is worth a warning at every start. */
const EXPIRY_WARNING_DAYS = 14;

function startupLine(config: Config, port: number, server: SignalingServerHandle): string {
  // The address clients use: the certificate's host name, not the address bound.
  const host = (server.certificate && publicName(server.certificate)) ?? (config.host || 'localhost');
  const url = `${server.secure ? 'wss' : 'ws'}://${host}:${port}/`;
  const mode = config.production ? 'production' : 'development';
  const token = config.staticToken === DEV_STATIC_TOKEN ? `, static token "${DEV_STATIC_TOKEN}"; set STATIC_TOKEN to change it` : '';
  const cert = server.certificate
    ? `; certificate for ${server.certificate.names.join(', ')}, expires ${server.certificate.notAfter.toISOString().slice(0, 10)}`
    : '';
  return `VideoWhisper WebRTC signaling on ${url} (${mode} mode${token}${cert})`;
}

async function main() {
  let config: Config;
  let server: SignalingServerHandle;
  try {
    config = loadConfig();
    server = createServer(config);
  } catch (err) {
    if (!(err instanceof ConfigError || err instanceof CertificateError)) throw err;
    console.error(`Configuration error: ${err.message}`);
    process.exit(1);
  }
  const { log } = server;
  process.on('unhandledRejection', (reason) => log.error({ err: reason }, 'unhandled rejection (the server goes on)'));
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception, exiting');
    process.exit(1);
  });

  // Signals are handled from before the start-up line: a supervisor may send
  // one as soon as it sees it, and an unhandled SIGUSR2 or SIGHUP would kill
  // the process. pm2 stops and reloads with SIGINT, systemd and docker with SIGTERM: the
  // same shutdown. A second signal ends a drain at once.
  let stopping = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.info({ signal }, 'second signal: closing the remaining sockets now');
      void server.close();
      return;
    }
    stopping = true;
    const { drainTimeoutMs: drainMs, shutdownGraceMs, shutdownTimeoutMs } = config;
    log.info({ signal, drainMs }, 'shutting down');
    // A shutdown that does not finish is not a clean one: a supervisor must see it.
    const boundMs = shutdownGraceMs + drainMs + shutdownTimeoutMs;
    const timer = setTimeout(() => {
      log.error({ boundMs }, 'shutdown took too long, exiting without finishing the clean-up');
      process.exit(1);
    }, boundMs);
    timer.unref();
    server.close({ drainMs }).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  // SIGHUP reloads accounts on every instance, like GET /update-accounts.
  process.on('SIGHUP', () => {
    void server.reloadAccounts().then((result) => log.info({ ...result, signal: 'SIGHUP' }, 'accounts reloaded on signal'));
  });
  // SIGUSR2 reads the certificate files again (they are also watched).
  process.on('SIGUSR2', () => server.reloadCertificate());

  const port = await server.listen().catch((err: NodeJS.ErrnoException) => {
    log.fatal({ err: err.message, port: config.port }, 'cannot listen');
    process.exit(1);
  });
  if (!server.secure && config.production) log.warn('CERTIFICATE is not set: serving plain HTTP/WS (use it locally or behind a TLS proxy)');
  // pm2 cluster mode sets NODE_APP_INSTANCE in every process: without Redis they would not share state.
  if (
    process.env.NODE_APP_INSTANCE !== undefined &&
    process.env.exec_mode === 'cluster_mode' &&
    !config.redisUrl &&
    !config.redisClusterNodes
  )
    log.warn('pm2 cluster mode without REDIS_URL or REDIS_CLUSTER_NODES: each process has its own channels and limits');
  if (config.production && !config.apiKey) log.warn('API_KEY is not set: the REST API refuses every keyed request');
  const certificate = server.certificate;
  if (certificate && certificate.notAfter.getTime() - systemClock.now() < EXPIRY_WARNING_DAYS * 86_400_000)
    log.warn(describeCertificate(certificate), 'the certificate expires soon (or has expired): renew it');
  log.info({ port, ...(certificate && { certificate: describeCertificate(certificate) }) }, startupLine(config, port, server));
  process.send?.('ready');
}

void main();
