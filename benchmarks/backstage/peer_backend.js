'use strict';
/*
 * The reference system of the benchmarks' `peers` scenario: a real Backstage backend serving the
 * routes of the kernel's bench rows (benchmarks/peer.py starts it, with NODE_ENV=production).
 *
 *   node peer_backend.js '{"port": 7100, "token": "...", "upstream": "http://127.0.0.1:8000"}'
 *
 * `createBackend()` of @backstage/backend-defaults with every default service factory, its
 * production defaults (request logging, helmet, CORS, compression as configured: none here)
 * unchanged; only the config is ours:
 * - plugin `bench`: `GET /api/bench/hello`, open (`addAuthPolicy({path: '/hello', allow:
 *   'unauthenticated'})`), answers `{"message": "hello, <name or world>"}` as the kernel's bench plugin
 *   does (contrib_plugins/bench/kernel_bench/handlers.py); `GET /api/bench/private/hello`, the same
 *   handler behind Backstage's default auth policy, checked by its httpAuth against
 *   `backend.auth.externalAccess` of type `static` with the benchmark's token (subject `bench`);
 * - when `upstream` is given, @backstage/plugin-proxy-backend with one open endpoint,
 *   `/up` -> upstream (`credentials: dangerously-allow-unauthenticated`), the same endpoint the
 *   kernel's proxy rows configure: `GET /api/proxy/up/hello`, `/api/proxy/up/download?size=N`.
 *
 * No SQL: no plugin here asks for a database, and the plugin key store is `static` (a P-256 pair
 * made at start by tests/interop/static_key_store.js, as for tests/interop/backstage_backend.js).
 *
 * The packages are tests/interop's (tests/interop/package.json and its lock: one pinned set of
 * Backstage packages for the wire tests and the benchmark, installed by scripts/interop-setup);
 * they are loaded from there with createRequire, so this file can live with the benchmarks.
 *
 * Prints "BACKSTAGE READY <port>" when listening.
 */
const path = require('node:path');
const { createRequire } = require('node:module');

const opts = JSON.parse(process.argv[2]);
const interop = opts.packages || path.join(__dirname, '..', '..', 'tests', 'interop');
const load = createRequire(path.join(interop, 'package.json'));
const express = load('express');
const { createBackend } = load('@backstage/backend-defaults');
const { createBackendPlugin, createServiceFactory, coreServices } = load('@backstage/backend-plugin-api');
const { ConfigReader } = load('@backstage/config');
const staticKeyStore = require(path.join(interop, 'static_key_store.js'));

const config = {
  backend: {
    baseUrl: `http://127.0.0.1:${opts.port}`,
    listen: { host: '127.0.0.1', port: opts.port },
    // never connected to: no plugin here asks for a database client
    database: { client: 'better-sqlite3', connection: ':memory:' },
    auth: {
      externalAccess: [{ type: 'static', options: { token: opts.token, subject: 'bench' } }],
      pluginKeyStore: staticKeyStore('backstage-peer-keys-'),
    },
  },
};
if (opts.upstream) {
  config.proxy = {
    endpoints: { '/up': { target: opts.upstream, credentials: 'dangerously-allow-unauthenticated' } },
  };
}

const bench = createBackendPlugin({
  pluginId: 'bench',
  register(env) {
    env.registerInit({
      deps: { httpRouter: coreServices.httpRouter },
      async init({ httpRouter }) {
        const router = express.Router();
        const hello = (req, res) => res.json({ message: `hello, ${req.query.name ?? 'world'}` });
        router.get('/hello', hello);
        router.get('/private/hello', hello);
        httpRouter.use(router);
        httpRouter.addAuthPolicy({ path: '/hello', allow: 'unauthenticated' });
      },
    });
  },
});

const backend = createBackend();
backend.add(
  createServiceFactory({ service: coreServices.rootConfig, deps: {}, factory: () => new ConfigReader(config) }),
);
backend.add(bench);
if (opts.upstream) backend.add(load('@backstage/plugin-proxy-backend'));
backend.start().then(
  () => console.log(`BACKSTAGE READY ${opts.port}`),
  (error) => {
    console.error('BACKSTAGE FAILED', error);
    process.exit(1);
  },
);
