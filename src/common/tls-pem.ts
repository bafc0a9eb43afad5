/**
 * TLS files named by a URL (a CA to trust, a client certificate and its key), read when
 * the settings are read and checked as PEM there: a missing, mismatched or wrong file is a
 * ConfigError naming its parameter at start, not a connection failure retried for ever.
 * The broker URLs name them `ca_file`, `cert_file`, `key_file`; PostgreSQL's `sslrootcert`,
 * `sslcert`, `sslkey`.
 */
import { createSecureContext } from 'node:tls';
import { ConfigError, errorMessage } from './errors.js';
import { registerSecret } from './secrets.js';
import { readSettingFile } from './setting-files.js';

/** PEM texts for Node's TLS options. */
export interface PemFiles {
  ca?: string;
  cert?: string;
  key?: string;
}

/** The URL parameter of each file. */
export interface PemParameters {
  ca: string;
  cert: string;
  key: string;
}

/** Reads the files at `paths` and checks them; `setting` and `names` name them in errors. */
export function readPemFiles(
  setting: string,
  paths: { ca?: string | undefined; cert?: string | undefined; key?: string | undefined },
  names: PemParameters,
): PemFiles {
  if ((paths.cert === undefined) !== (paths.key === undefined)) {
    throw new ConfigError(
      setting,
      `${names.cert} and ${names.key} go together (a client certificate and its key)`,
    );
  }
  const files: PemFiles = {};
  if (paths.ca !== undefined) {
    files.ca = readSettingFile(setting, names.ca, paths.ca);
    if (!files.ca.includes('-----BEGIN CERTIFICATE-----')) {
      throw new ConfigError(setting, `${names.ca}: ${paths.ca} holds no PEM certificate`);
    }
    try {
      createSecureContext({ ca: files.ca });
    } catch (error) {
      throw new ConfigError(setting, `${names.ca}: not a PEM certificate: ${errorMessage(error)}`);
    }
  }
  if (paths.cert !== undefined && paths.key !== undefined) {
    files.cert = readSettingFile(setting, names.cert, paths.cert);
    files.key = readSettingFile(setting, names.key, paths.key);
    registerSecret(files.key.trim());
    // Here, not at the first connection: a key that is not the certificate's is a setting.
    if (
      /-----BEGIN (?:ENCRYPTED PRIVATE KEY|[A-Z]+ PRIVATE KEY-----\s*Proc-Type: 4,ENCRYPTED)/.test(
        files.key,
      )
    ) {
      // Node would say "bad decrypt" (no passphrase given), which reads as a wrong one.
      throw new ConfigError(
        setting,
        `${names.key}: ${paths.key} holds an encrypted private key, and no passphrase is read: give the key unencrypted in a file only this process's user can read (openssl pkey -in encrypted.pem -out key.pem)`,
      );
    }
    try {
      createSecureContext({ cert: files.cert, key: files.key });
    } catch (error) {
      // Node's message names the problem (no start line, key values mismatch), not the key.
      throw new ConfigError(
        setting,
        `${names.cert}, ${names.key}: not a PEM certificate and its private key: ${errorMessage(error)}`,
      );
    }
  }
  return files;
}
