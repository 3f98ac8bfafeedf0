// pm2 process file: `pm2 start ecosystem.config.js --env production`.
// Settings come from `.env` beside this file (see .env.example); the
// environments here only choose the mode.
//
// Without REDIS_URL: one process (fork mode). With REDIS_URL: pm2 cluster
// mode, one process per core (or PM2_INSTANCES), sharing state through Redis.
require('dotenv').config({ path: `${__dirname}/.env`, quiet: true });

const cluster = Boolean(process.env.REDIS_URL);

module.exports = {
  apps: [
    {
      name: 'videowhisper-webrtc',
      script: 'dist/main.js',
      cwd: __dirname,
      exec_mode: cluster ? 'cluster' : 'fork',
      instances: cluster ? Number(process.env.PM2_INSTANCES) || 'max' : 1,
      // The server calls process.send('ready') once it listens.
      wait_ready: true,
      listen_timeout: 15000,
      // Time to tell every peer its channel closed before pm2 kills the process.
      kill_timeout: 8000,
      max_memory_restart: '2G',
      env: { NODE_ENV: 'development' },
      env_development: { NODE_ENV: 'development' },
      env_production: { NODE_ENV: 'production' },
    },
  ],
};
