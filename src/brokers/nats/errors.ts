import { JetStreamApiError } from '@nats-io/jetstream';
import {
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
} from '@nats-io/transport-node';
import { errorMessage } from '../../common/errors.js';
import type { PublishResult } from '../broker.js';
import type { NatsSettings } from './settings.js';
import type { Link, PublishRun } from './transport.js';

/** How one message ended: a result for the dispatcher, or "the server is unreachable". */
export type Outcome = PublishResult | { unavailable: string };

/**
 * Decides by error class (and the JetStream error code), not by message text: the message
 * refused (permanent), the server unreachable (the whole batch), or else retry this message.
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
  if (causedBy(error, InvalidSubjectError) || causedBy(error, PermissionViolationError)) {
    return refused(`${reason} (subject ${subject})`);
  }
  const api = causedBy(error, JetStreamApiError);
  if (causedBy(error, NoRespondersError) || api?.code === 10059) {
    // The stream is gone (deleted while we run) or has no leader: not the event's fault.
    // The dispatcher reconnects, and connecting creates the stream again if it is missing.
    return {
      unavailable: `no stream captures subject ${subject} (stream ${stream} deleted or without a leader)`,
    };
  }
  if (api) {
    // 10054: larger than the stream's max_msg_size.
    const permanent = api.code === 10054;
    return { ok: false, error: `stream ${stream}: ${api.message} (code ${api.code})`, permanent };
  }
  if (!link.up) return { unavailable: link.reason };
  if (error instanceof TimeoutError) {
    if (!(await run.serverAnswers())) {
      return { unavailable: `no PubAck within ${timeoutMs} ms and no PONG from ${location}` };
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
