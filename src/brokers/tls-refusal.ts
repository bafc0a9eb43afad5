/**
 * TLS failures that a broker URL's settings cause, by the code Node (OpenSSL) puts on the
 * error: we do not trust the server's certificate (`ca_file`, the host name), or the server
 * refuses our client certificate or wants one (`cert_file`, `key_file`). Retrying cannot
 * fix them, so a broker turns them into a ConfigError instead of an outage.
 */

/** OpenSSL's verdicts on the server's certificate chain. */
export const untrustedCertificateCodes: ReadonlySet<string> = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
]);

/** The certificate is good but names other hosts than the one connected to. */
export const wrongHostCodes: ReadonlySet<string> = new Set([
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'HOSTNAME_MISMATCH',
]);

/** TLS alerts with which a server refuses the client's certificate, or its lack of one. */
export const clientCertificateRefusedCodes: ReadonlySet<string> = new Set([
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED',
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
]);

/** What a TLS failure says, for the sentence that names the parameters to check. */
export type TlsRefusal =
  | { kind: 'untrusted'; said: string }
  | { kind: 'wrong-host'; said: string }
  | { kind: 'client-certificate'; said: string }
  | { kind: 'other'; said: string };

/**
 * The TLS refusal in `error` or its causes (5 deep), or undefined when it is none (an
 * outage: refused, reset, timed out). OpenSSL's `reason` (`sslv3 alert bad certificate`)
 * is preferred to its message, a line of internals.
 */
export function tlsRefusal(error: unknown): TlsRefusal | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const { code, reason } = e as { code?: unknown; reason?: unknown };
    if (typeof code !== 'string') continue;
    const said = typeof reason === 'string' ? reason : e.message;
    if (untrustedCertificateCodes.has(code)) return { kind: 'untrusted', said: e.message };
    if (wrongHostCodes.has(code)) return { kind: 'wrong-host', said: e.message };
    if (clientCertificateRefusedCodes.has(code) || /^ERR_SSL_.*ALERT/.test(code)) {
      return { kind: 'client-certificate', said };
    }
    if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_OSSL_')) return { kind: 'other', said };
  }
  return undefined;
}
