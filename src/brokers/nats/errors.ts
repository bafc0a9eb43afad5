import { JetStreamApiError } from '@nats-io/jetstream';
import {
  AuthorizationError,
  ClosedConnectionError,
  ConnectionError,
  DrainingConnectionError,
  InvalidArgumentError,
  InvalidSubjectError,
  type NatsConnection,
  NoRespondersError,
  PermissionViolationError,
  RequestError,
  TimeoutError,
  UserAuthenticationExpiredError,
} from '@nats-io/transport-node';
import { errorMessage } from '../../common/errors.js';
import type { PublishResult } from '../broker.js';
import { tlsRefusal } from '../tls-refusal.js';
import { ForeignReplyError } from './pub-acks.js';
import type { NatsSettings } from './settings.js';
import { captures } from './subjects.js';
import type { Link, PublishRun } from './transport.js';

/**
 * JetStream API errors about the server's state, not the message: 10023 insufficient
 * resources, 10008 JetStream temporarily unavailable (both status 503).
 */
const serverStateCodes = new Set([10023, 10008]);

/**
 * The store refused the message (10077) because the whole stream is full, with discard
 * new: every message would be refused alike. Not a subject's own limit (`maximum messages
 * per subject exceeded`), which refuses that subject's events only.
 */
const streamFull = (api: JetStreamApiError) =>
  api.code === 10077 && /^maximum (messages|bytes) exceeded$/.test(api.message);

/**
 * How one message ended: a result for the dispatcher, "the server is unreachable", or
 * "the server does not permit what publishing needs" (a setting to fix, for every message).
 */
export type Outcome = PublishResult | { unavailable: string } | { forbidden: string };

/**
 * Decides by error class (and the JetStream error code), not by message text, but for
 * code 10077, which the server gives a full stream and a subject at its own limit alike
 * (streamFull): the message refused (permanent), the server unreachable (the whole batch),
 * or else retry this message.
 */
export async function classifyPublishError(
  error: unknown,
  context: {
    nc: NatsConnection;
    link: Link;
    run: PublishRun;
    settings: NatsSettings;
    subject: string;
    bytes: number;
  },
): Promise<Outcome> {
  const { nc, link, run, settings, subject, bytes } = context;
  const { stream, timeoutMs, location } = settings;
  const reason = errorMessage(error);
  if (causedBy(error, InvalidArgumentError)) {
    // The client checks the server's max_payload before sending (the server would drop the connection).
    const limit = nc.info?.max_payload;
    return refused(`${reason} (${bytes} bytes + headers${limit ? `; max_payload ${limit}` : ''})`);
  }
  if (causedBy(error, InvalidSubjectError)) {
    return refused(`${reason} (subject ${subject})`);
  }
  const denied = permissionDenied(error, settings.subjectPrefix);
  if (denied) {
    // The user's permissions, not the event: every event would be refused the same way,
    // and parking them would only hide a setting to fix.
    return { forbidden: denied };
  }
  const api = causedBy(error, JetStreamApiError);
  if (causedBy(error, NoRespondersError) || api?.code === 10059) {
    // The stream is gone (deleted while we run) or has no leader: not the event's fault.
    // The dispatcher reconnects, and connecting creates the stream again if it is missing.
    return {
      unavailable: `no stream captures subject ${subject} (stream ${stream} deleted or without a leader)`,
    };
  }
  if (causedBy(error, ForeignReplyError)) {
    // Not the event's fault: it waits, its aggregate with it, until the stream answers.
    return { unavailable: `${subject}: ${reason}` };
  }
  if (api?.code === 10077 && api.message === 'maximum bytes exceeded') {
    // Full, or this message alone over max_bytes: an empty stream refusing it says so.
    const room = await run.streamRoom(stream, timeoutMs);
    if (room && (room.bytes === 0 || bytes >= room.maxBytes)) {
      return refused(
        `stream ${stream}: ${api.message} (code ${api.code}): this message (${bytes} bytes + headers) does not fit in the stream's max_bytes (${room.maxBytes}) even when it is empty`,
      );
    }
  }
  if (api && (serverStateCodes.has(api.code) || streamFull(api))) {
    // The stream full (discard new), or the server out of resources: no event is at
    // fault, and counting attempts would dead-letter the backlog while it lasts.
    return { unavailable: `stream ${stream}: ${api.message} (code ${api.code})` };
  }
  if (api) {
    // 10054: larger than the stream's max_msg_size; 10097: headers over the 64 KiB
    // JetStream stores with a message. Sent again, either is refused again.
    const permanent = api.code === 10054 || api.code === 10097;
    return { ok: false, error: `stream ${stream}: ${api.message} (code ${api.code})`, permanent };
  }
  if (!link.up) return { unavailable: link.reason };
  if (error instanceof TimeoutError) {
    if (!(await run.serverAnswers())) {
      return { unavailable: `no PubAck within ${timeoutMs} ms and no PONG from ${location}` };
    }
    // Not the event's fault either when its stream is gone or no longer takes its subject:
    // the dispatcher reconnects, which creates the stream again or says what is wrong.
    const subjects = await run.streamSubjects(stream, timeoutMs);
    if (subjects === null) {
      return {
        unavailable: `no PubAck within ${timeoutMs} ms: stream ${stream} does not exist (deleted; something other than a stream listens on ${subject})`,
      };
    }
    if (subjects && !subjects.some((filter) => captures(filter, subject))) {
      return {
        unavailable: `no PubAck within ${timeoutMs} ms: stream ${stream} no longer captures ${subject} (its subjects: ${subjects.join(', ') || 'none'})`,
      };
    }
    return {
      ok: false,
      error: `no PubAck from stream ${stream} within ${timeoutMs} ms`,
      permanent: false,
    };
  }
  // Closed, draining, or a request cancelled because the connection went away.
  if (
    error instanceof ClosedConnectionError ||
    error instanceof DrainingConnectionError ||
    error instanceof ConnectionError ||
    error instanceof RequestError
  ) {
    return { unavailable: `${location}: ${reason}` };
  }
  return { ok: false, error: reason, permanent: false };
}

/**
 * Why connecting failed, when retrying cannot help: the server refused our credentials,
 * we refused its certificate, it refused ours (a TLS alert), or TLS was asked of a server
 * without it. `auth` says which credentials we sent. Undefined: the server may come back
 * (down, unreachable, timed out) and the caller retries.
 */
export function connectRefusal(error: unknown, auth: string): string | undefined {
  const denied =
    causedBy(error, AuthorizationError) ?? causedBy(error, UserAuthenticationExpiredError);
  // "Authentication Timeout" is the server tiring of a slow handshake, not a verdict.
  if (denied && !/timeout/i.test(denied.message)) {
    return `the server refused ${auth}: ${denied.message}`;
  }
  const tls = tlsRefusal(error);
  switch (tls?.kind) {
    case 'untrusted':
      return `TLS: the server's certificate is not trusted (${tls.said}; ca_file names the CA to trust)`;
    case 'wrong-host':
      return `TLS: the server's certificate does not name the host the URL gives (${tls.said}; give the server a certificate naming that host, as a DNS name or an IP address, or connect by a name it carries)`;
    case 'client-certificate':
      // The server's alert: a client certificate missing (cert_file, key_file) or refused.
      return `TLS: the server refused the connection (${tls.said}; a server with verify: true needs cert_file and key_file)`;
    case 'other':
      return `TLS: ${tls.said}`;
  }
  // The client's own check, before any handshake; it has no class or code of its own.
  const connection = causedBy(error, ConnectionError);
  if (connection && /does not support 'tls'/.test(connection.message)) {
    return 'the server does not offer TLS, which tls=true, ca_file or cert_file require';
  }
  return undefined;
}

/**
 * The user's permissions refused a publish or a subscription (the server's "Permissions
 * Violation"), as a sentence naming the subject and the right it needs; undefined otherwise.
 */
export function permissionDenied(error: unknown, subjectPrefix?: string): string | undefined {
  const violation = causedBy(error, PermissionViolationError);
  if (!violation) return undefined;
  const right = violation.operation === 'publish' ? 'publish' : 'subscribe';
  return `the server does not let this user ${right} to "${violation.subject}" (${violation.message}): grant it ${right} rights on "${rightFor(violation.subject, subjectPrefix)}" (see docs/operations.md#nats for the permissions needed)`;
}

/** The subject pattern to grant, rather than one message's reply inbox or API call. */
function rightFor(subject: string, subjectPrefix: string | undefined): string {
  if (subjectPrefix && subject.startsWith(`${subjectPrefix}.`)) return `${subjectPrefix}.>`;
  if (subject.startsWith('_INBOX.')) return '_INBOX.>';
  if (subject.startsWith('$JS.ACK.')) return '$JS.ACK.>';
  return subject;
}

function refused(error: string): PublishResult {
  return { ok: false, error, permanent: true };
}

/** `error` or the first of its causes that is a `type`. The client wraps errors in RequestError. */
function causedBy<T extends Error>(
  error: unknown,
  // biome-ignore lint/suspicious/noExplicitAny: any constructor signature will do for instanceof
  type: abstract new (...args: any[]) => T,
): T | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof type) return e;
  }
  return undefined;
}
