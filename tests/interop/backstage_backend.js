'use strict';
/*
 * A real Backstage backend for tests/interop/test_backstage_tokens.py.
 *
 * `createBackend()` of @backstage/backend-defaults with every default service factory
 * (auth, httpAuth, httpRouter, discovery, ...), unchanged except for its config. Plugin
 * tokens are issued and verified by Backstage's own DefaultAuthService /
 * DefaultPluginTokenHandler / JwksClient; nothing below re-implements them.
 *
 *   node backstage_backend.js '{"port": 7100, "endpoints": [{"target": "http://127.0.0.1:7007/api/{{pluginId}}", "plugins": ["caller", "callee"]}]}'
 *
 * Plugins:
 * - `bsplugin`: whoami (who Backstage says called), call / call-as-user (call another plugin,
 *   found by discovery, with a plugin token made by Backstage's auth service), limited (Backstage's
 *   UserTokenHandler.createLimitedUserToken on a given token, verified with jose as
 *   UserTokenHandler.verifyToken does when a JWK is given).
 * - `auth`: a stand-in for @backstage/plugin-auth-backend (whose router needs a SQL database,
 *   and no SQLite driver can be installed here without native builds). It issues user tokens
 *   with that package's own TokenFactory (identity/TokenFactory, MemoryKeyStore) and serves its
 *   keys at /.well-known/jwks.json, as the real plugin does.
 *
 * Keys: `backend.auth.pluginKeyStore` type `static` (a production option of Backstage; the default
 * `database` store also needs SQL), with a P-256 pair made at start (static_key_store.js).
 *
 * Prints "BACKSTAGE READY <port>" when listening.
 */
const path = require('node:path');
const express = require('express');
const jose = require('jose');
const { createBackend } = require('@backstage/backend-defaults');
const { createBackendPlugin, createServiceFactory, coreServices } = require('@backstage/backend-plugin-api');
const { ConfigReader } = require('@backstage/config');
const staticKeyStore = require('./static_key_store');
// Internals the packages do not export ("exports" refuses deep imports): loaded by file path.
// The reference code itself, not a copy.
const internal = (pkg, file) => require(path.join(path.dirname(require.resolve(`${pkg}/package.json`)), file));
const { UserTokenHandler } = internal('@backstage/backend-defaults', 'dist/entrypoints/auth/user/UserTokenHandler.cjs.js');
const { TokenFactory } = internal('@backstage/plugin-auth-backend', 'dist/identity/TokenFactory.cjs.js');
const { MemoryKeyStore } = internal('@backstage/plugin-auth-backend', 'dist/identity/MemoryKeyStore.cjs.js');

const opts = JSON.parse(process.argv[2]);
const baseUrl = `http://127.0.0.1:${opts.port}`;

const config = {
  backend: {
    baseUrl,
    listen: { host: '127.0.0.1', port: opts.port },
    // never connected to: no plugin here asks for a database client
    database: { client: 'better-sqlite3', connection: ':memory:' },
    auth: {
      pluginKeyStore: staticKeyStore('backstage-interop-keys-'),
    },
  },
  discovery: { endpoints: opts.endpoints },
};

/** An express handler whose rejection becomes Backstage's error response. */
const handle = (fn) => (req, res, next) => fn(req, res).then((body) => res.json(body), next);

const bsplugin = createBackendPlugin({
  pluginId: 'bsplugin',
  register(env) {
    env.registerInit({
      deps: {
        httpRouter: coreServices.httpRouter,
        auth: coreServices.auth,
        httpAuth: coreServices.httpAuth,
        discovery: coreServices.discovery,
        logger: coreServices.logger,
      },
      async init({ httpRouter, auth, httpAuth, discovery, logger }) {
        const users = UserTokenHandler.create({ discovery, logger });
        const router = express.Router();
        router.use(express.json());
        const describe = (p) =>
          p.type === 'user'
            ? { type: 'user', subject: p.userEntityRef, actor: p.actor ? p.actor.subject : '' }
            : { type: p.type, subject: p.subject, actor: '' };
        const call = async (onBehalfOf, target, urlPath) => {
          const { token } = await auth.getPluginRequestToken({ onBehalfOf, targetPluginId: target });
          const res = await fetch(`${await discovery.getBaseUrl(target)}${urlPath}`, {
            headers: { authorization: `Bearer ${token}` },
          });
          return { status: res.status, body: await res.json(), token };
        };
        router.get('/whoami', handle(async (req) => describe((await httpAuth.credentials(req)).principal)));
        router.get(
          '/call',
          handle(async (req) => call(await auth.getOwnServiceCredentials(), req.query.target, req.query.path)),
        );
        router.get(
          '/call-as-user',
          handle(async (req) =>
            call(await httpAuth.credentials(req, { allow: ['user'] }), req.query.target, req.query.path),
          ),
        );
        router.post(
          '/limited',
          handle(async (req) => {
            const { token, expiresAt } = users.createLimitedUserToken(req.body.token);
            let verified = null;
            if (req.body.jwk) {
              // the checks of UserTokenHandler.verifyToken for a limited token, against the given key
              const { payload } = await jose.jwtVerify(token, await jose.importJWK(req.body.jwk, 'ES256'), {
                typ: 'vnd.backstage.limited-user',
                requiredClaims: ['iat', 'exp', 'sub'],
              });
              verified = payload;
            }
            return { token, expiresAt: expiresAt.getTime() / 1000, verified };
          }),
        );
        httpRouter.use(router);
        httpRouter.addAuthPolicy({ path: '/call', allow: 'unauthenticated' });
        httpRouter.addAuthPolicy({ path: '/limited', allow: 'unauthenticated' });
      },
    });
  },
});

const authStandIn = createBackendPlugin({
  pluginId: 'auth',
  register(env) {
    env.registerInit({
      deps: { httpRouter: coreServices.httpRouter, logger: coreServices.logger },
      async init({ httpRouter, logger }) {
        const tokens = new TokenFactory({
          issuer: `${baseUrl}/api/auth`,
          keyStore: new MemoryKeyStore(),
          keyDurationSeconds: 3600,
          logger: logger.child({ component: 'token-factory' }),
        });
        const router = express.Router();
        router.use(express.json());
        router.get('/.well-known/jwks.json', handle(async () => tokens.listPublicKeys()));
        router.post(
          '/issue',
          handle(async (req) => tokens.issueToken({ claims: { sub: req.body.sub, ent: req.body.ent } })),
        );
        httpRouter.use(router);
        httpRouter.addAuthPolicy({ path: '/.well-known', allow: 'unauthenticated' });
        httpRouter.addAuthPolicy({ path: '/issue', allow: 'unauthenticated' });
      },
    });
  },
});

const backend = createBackend();
backend.add(
  createServiceFactory({ service: coreServices.rootConfig, deps: {}, factory: () => new ConfigReader(config) }),
);
backend.add(bsplugin);
backend.add(authStandIn);
backend.start().then(
  () => console.log(`BACKSTAGE READY ${opts.port}`),
  (error) => {
    console.error('BACKSTAGE FAILED', error);
    process.exit(1);
  },
);
