/**
 * TLS of a NATS broker URL: `tls=true`, `ca_file` (the CA to trust), `cert_file` and
 * `key_file` (a client certificate). Read when the settings are read, never on import.
 */
import { ConfigError } from '../../common/errors.js';
import { readTlsFiles, type TlsFiles, tlsFilesGiven } from '../tls-files.js';
import type { BrokerUrlParams } from '../url-params.js';

/**
 * PEM texts for the client's `tls` option. Present: TLS is required. `ca_file` is trusted
 * instead of Node's CA store; `cert_file` + `key_file` are the client certificate, for
 * servers with `verify: true`.
 */
export type NatsTls = TlsFiles;

/**
 * The URL's TLS settings; undefined leaves the choice to the client, which encrypts when
 * the server offers TLS but does not insist. A CA or client certificate means TLS is
 * required. A file that cannot be read, or does not hold what its parameter says, is a
 * ConfigError naming the parameter.
 */
export function readNatsTls(params: BrokerUrlParams): NatsTls | undefined {
  const asked = params.string('tls', '', /^(true|false)?$/, 'true or false');
  const given = tlsFilesGiven(params);
  if (asked === 'false' && given.length > 0) {
    throw new ConfigError(
      params.setting,
      'tls=false with ca_file, cert_file or key_file: the files need TLS; drop tls=false',
    );
  }
  const tls = readTlsFiles(params);
  if (given.length === 0) return asked === 'true' ? {} : undefined;
  return tls;
}
