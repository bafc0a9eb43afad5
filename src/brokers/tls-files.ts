/**
 * The TLS files of a broker URL: `ca_file` (the CAs to trust instead of Node's store),
 * `cert_file` and `key_file` (a client certificate and its key). Read when the settings
 * are read, so a missing or wrong file is a ConfigError naming its parameter at start,
 * not a connection failure retried for ever.
 */
import { type PemFiles, readPemFiles } from '../common/tls-pem.js';
import type { BrokerUrlParams } from './url-params.js';

/** PEM texts for Node's TLS options. */
export type TlsFiles = PemFiles;

/** The TLS file parameters the URL gives, by name, before anything is read. */
export function tlsFilesGiven(params: BrokerUrlParams): string[] {
  return ['ca_file', 'cert_file', 'key_file'].filter((name) => params.url.searchParams.has(name));
}

/** The files the URL gives, read and checked. */
export function readTlsFiles(params: BrokerUrlParams): TlsFiles {
  return readPemFiles(
    params.setting,
    {
      ca: params.optional('ca_file'),
      cert: params.optional('cert_file'),
      key: params.optional('key_file'),
    },
    { ca: 'ca_file', cert: 'cert_file', key: 'key_file' },
  );
}
