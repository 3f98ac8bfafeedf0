// pm2 process file: `pm2 start ecosystem.config.js --env production`.
// Settings come from `.env` beside this file (see .env.example); the
// environments here only choose the mode.
module.exports = {
  apps: [
    {
      name: 'videowhisper-webrtc',
      script: 'dist/main.js',
      cwd: __dirname,
      exec_mode: 'fork',
      instances: 1,
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
    {
      // Several processes on this machine as one server: needs REDIS_URL in .env.
      // Start it instead of the app above (they share PORT):
      // pm2 start ecosystem.config.js --only videowhisper-webrtc-cluster --env production
      name: 'videowhisper-webrtc-cluster',
      script: 'dist/main.js',
      cwd: __dirname,
      exec_mode: 'cluster',
      instances: 'max',
      wait_ready: true,
      listen_timeout: 15000,
      kill_timeout: 8000,
      max_memory_restart: '2G',
      env: { NODE_ENV: 'development' },
      env_development: { NODE_ENV: 'development' },
      env_production: { NODE_ENV: 'production' },
    },
  ],
};
