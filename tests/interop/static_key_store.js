'use strict';
/*
 * `backend.auth.pluginKeyStore` of type `static` (a production option of Backstage; the default
 * `database` store needs SQL) with a P-256 pair made here, in a temporary folder removed at exit
 * (SIGTERM and SIGINT exit the process, so that it is). Used by backstage_backend.js and by the
 * benchmarks' Backstage (benchmarks/backstage/peer_backend.js).
 */
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

module.exports = function staticKeyStore(prefix) {
  const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  fs.writeFileSync(path.join(keyDir, 'public.pem'), pair.publicKey.export({ type: 'spki', format: 'pem' }));
  fs.writeFileSync(path.join(keyDir, 'private.pem'), pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  process.on('exit', () => fs.rmSync(keyDir, { recursive: true, force: true }));
  for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
  return {
    type: 'static',
    static: {
      keys: [
        {
          publicKeyFile: path.join(keyDir, 'public.pem'),
          privateKeyFile: path.join(keyDir, 'private.pem'),
          keyId: `backstage-${crypto.randomUUID()}`,
        },
      ],
    },
  };
};
