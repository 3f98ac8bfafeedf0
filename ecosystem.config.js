// pm2 process file: `npx pm2 start ecosystem.config.js --env production`.
//
// Settings live in `.env` beside this file (see .env.example) and the server
// reads it itself at every start, so `pm2 restart` applies an edited `.env`
// and no setting (API_KEY, tokens, passwords) is copied into pm2's saved
// environment or `pm2 save`'s dump. This file only peeks at the few values
// that shape the processes, without putting them into the environment.
//
// Without REDIS_URL: one process (fork mode). With REDIS_URL (or REDIS_CLUSTER_NODES): pm2 cluster
// mode, one process per core (or PM2_INSTANCES), sharing state through Redis;
// `pm2 reload` then replaces them one by one without dropping calls.
const { existsSync, readFileSync } = require('node:fs');
const { parse } = require('dotenv');

const envFile = process.env.DOTENV_CONFIG_PATH || `${__dirname}/.env`;
const file = existsSync(envFile) ? parse(readFileSync(envFile)) : {};
// As in the server: the environment wins over the file.
const setting = (name) => process.env[name] || file[name] || '';
const ms = (name, fallback) => (setting(name) === '' ? fallback : Number(setting(name)));

const cluster = Boolean(setting('REDIS_URL') || setting('REDIS_CLUSTER_NODES'));
// The server's defaults (src/config.ts): draining only happens in a cluster.
const drainMs = ms('DRAIN_TIMEOUT_MS', cluster ? 600000 : 0);
const shutdownMs = ms('SHUTDOWN_GRACE_MS', 0) + drainMs + ms('SHUTDOWN_TIMEOUT_MS', 5000);

module.exports = {
  apps: [
    {
      name: 'videowhisper-webrtc',
      script: 'dist/main.js',
      cwd: __dirname,
      exec_mode: cluster ? 'cluster' : 'fork',
      instances: cluster ? Number(setting('PM2_INSTANCES')) || 'max' : 1,
      // The server calls process.send('ready') once it listens; `pm2 reload`
      // stops an old process only once its replacement is ready.
      wait_ready: true,
      listen_timeout: 15000,
      // pm2 stops with SIGINT; the server shuts down the same on SIGTERM.
      // It exits by itself within grace + drain + shutdown time; pm2 must
      // not kill it sooner (it sends SIGKILL after kill_timeout).
      kill_timeout: shutdownMs + 5000,
      max_memory_restart: '2G',
      // glibc malloc with a fixed trim threshold (as the Dockerfile): less RSS per idle
      // connection (README, Performance). Read by glibc at the process's start only.
      env: { NODE_ENV: 'development', MALLOC_TRIM_THRESHOLD_: '131072' },
      env_development: { NODE_ENV: 'development', MALLOC_TRIM_THRESHOLD_: '131072' },
      env_production: { NODE_ENV: 'production', MALLOC_TRIM_THRESHOLD_: '131072' },
    },
  ],
};
