# The signaling server in a container: `docker compose up -d` (compose.yaml)
# starts it with MariaDB, Redis and coturn. Settings come from the
# environment (compose passes `.env`); mount a certificate and set
# CERTIFICATE, or leave it unset behind a TLS proxy.
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY patches ./patches
# npm ci applies patches/ (postinstall) and builds (prepare), then the dev dependencies go.
RUN npm ci --no-audit --no-fund && npm prune --omit=dev --no-audit --no-fund

FROM node:22-bookworm-slim
ENV NODE_ENV=production
# glibc malloc: a fixed trim threshold (its default value, 128 KiB) turns off glibc's dynamic
# one, which rises after large frees (most likely at start-up) and then leaves freed
# handshake memory resident: about 10% less RSS per idle TLS connection at a few thousand
# connections (README, Performance).
ENV MALLOC_TRIM_THRESHOLD_=131072
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The demo page's HTML and CSS are served from src/demo/page; the SQL for `npm run db:setup`.
COPY src/demo/page ./src/demo/page
COPY sql ./sql
USER node
EXPOSE 3000
# docker stop sends SIGTERM: the server tells peers, drains (DRAIN_TIMEOUT_MS) and exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "process.env.NODE_TLS_REJECT_UNAUTHORIZED='0'; fetch((process.env.CERTIFICATE ? 'https' : 'http') + '://127.0.0.1:' + (process.env.PORT || 3000) + '/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/main.js"]
