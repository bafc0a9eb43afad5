/**
 * The TLS files of a broker URL: `ca_file` (the CAs to trust instead of Node's store),
 * `cert_file` and `key_file` (a client certificate and its key). Read when the settings
 * are read, so a missing or wrong file is a ConfigError naming its parameter at start,
 * not a connection failure retried for ever.
 */
import { createSecureContext } from 'node:tls';
import { ConfigError, errorMessage } from '../common/errors.js';
import { registerSecret } from '../common/secrets.js';
import { readSettingFile } from '../common/setting-files.js';
import type { BrokerUrlParams } from './url-params.js';

/** PEM texts for Node's TLS options. */
export interface TlsFiles {
  ca?: string;
  cert?: string;
  key?: string;
}

/** The TLS file parameters the URL gives, by name, before anything is read. */
export function tlsFilesGiven(params: BrokerUrlParams): string[] {
  return ['ca_file', 'cert_file', 'key_file'].filter((name) => params.url.searchParams.has(name));
}

/** The files the URL gives, read and checked. */
export function readTlsFiles(params: BrokerUrlParams): TlsFiles {
  const { setting } = params;
  const paths = {
    ca: params.optional('ca_file'),
    cert: params.optional('cert_file'),
    key: params.optional('key_file'),
  };
  if ((paths.cert === undefined) !== (paths.key === undefined)) {
    throw new ConfigError(
      setting,
      'cert_file and key_file go together (a client certificate and its key)',
    );
  }
  const files: TlsFiles = {};
  if (paths.ca !== undefined) {
    files.ca = readSettingFile(setting, 'ca_file', paths.ca);
    if (!files.ca.includes('-----BEGIN CERTIFICATE-----')) {
      throw new ConfigError(setting, `ca_file: ${paths.ca} holds no PEM certificate`);
    }
    try {
      createSecureContext({ ca: files.ca });
    } catch (error) {
      throw new ConfigError(setting, `ca_file: not a PEM certificate: ${errorMessage(error)}`);
    }
  }
  if (paths.cert !== undefined && paths.key !== undefined) {
    files.cert = readSettingFile(setting, 'cert_file', paths.cert);
    files.key = readSettingFile(setting, 'key_file', paths.key);
    registerSecret(files.key.trim());
    // Here, not at the first connection: a key that is not the certificate's is a setting.
    try {
      createSecureContext({ cert: files.cert, key: files.key });
    } catch (error) {
      // Node's message names the problem (no start line, key values mismatch), not the key.
      throw new ConfigError(
        setting,
        `cert_file, key_file: not a PEM certificate and its private key: ${errorMessage(error)}`,
      );
    }
  }
  return files;
}
