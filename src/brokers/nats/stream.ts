import {
  JetStreamApiError,
  type JetStreamManager,
  jetstreamManager,
  type StreamInfo,
} from '@nats-io/jetstream';
import { type NatsConnection, nanos } from '@nats-io/transport-node';
import { BrokerUnavailableError, ConfigError, errorMessage } from '../../common/errors.js';
import { permissionDenied } from './errors.js';
import type { NatsSettings } from './settings.js';
import { captures } from './subjects.js';

/**
 * Creates the stream over `<subject_prefix>.>` if missing; else checks that it captures
 * those subjects. The stream as found, or undefined when it was created here.
 */
export async function ensureStream(
  nc: NatsConnection,
  settings: NatsSettings,
): Promise<StreamInfo | undefined> {
  const { stream, subjectPrefix, duplicateWindowS, replicas, timeoutMs, location } = settings;
  const subject = `${subjectPrefix}.>`;
  // What publish sends to; an existing stream over exactly these is fine too.
  const publishedTo = `${subjectPrefix}.*.*`;
  let jsm: JetStreamManager;
  try {
    jsm = await jetstreamManager(nc, { timeout: timeoutMs });
  } catch (error) {
    // The user may not call the JetStream API, or not receive its answers: a setting.
    forbidden(error, settings, 'cannot reach the JetStream API');
    // A cluster electing its leaders after losing a server answers like one without
    // JetStream, for a few seconds: say both.
    throw new BrokerUnavailableError(
      `JetStream at NATS ${location} did not answer (${errorMessage(error)}): a cluster electing its leader answers so for a few seconds; a server started without -js, always`,
      { cause: error },
    );
  }
  let info: StreamInfo | undefined;
  try {
    info = await streamInfo(jsm, stream);
  } catch (error) {
    forbidden(error, settings, `cannot read NATS stream "${stream}"`);
    throw error;
  }
  const found = info;
  if (!info) {
    try {
      info = await jsm.streams.add({
        name: stream,
        subjects: [subject],
        duplicate_window: nanos(duplicateWindowS * 1000),
        num_replicas: replicas,
        description: 'EduPulse outbox events (CloudEvents, binary mode)',
      });
    } catch (error) {
      // The server refused the stream (subjects overlap another stream, limits, …); not a
      // network problem. Unless another dispatcher created it first (10058: name in use).
      // A user without the right to create streams: the stream must be made for it.
      forbidden(
        error,
        settings,
        `NATS stream "${stream}" does not exist and this user may not create it`,
        `or have it created beforehand: nats stream add ${stream} --subjects '${subject}' --dupe-window ${duplicateWindowS}s${replicas > 1 ? ` --replicas ${replicas}` : ''}`,
      );
      if (!(error instanceof JetStreamApiError)) throw error;
      info = error.code === 10058 ? await streamInfo(jsm, stream) : undefined;
      if (!info) {
        throw new ConfigError(
          settings.setting,
          `cannot create NATS stream "${stream}" over "${subject}": ${errorMessage(error)}`,
          { cause: error },
        );
      }
    }
  }
  const subjects = info.config.subjects ?? [];
  if (!subjects.some((filter) => captures(filter, publishedTo))) {
    throw new ConfigError(
      settings.setting,
      `NATS stream "${stream}" exists but does not capture "${publishedTo}" (its subjects: ${
        subjects.join(', ') || 'none'
      }); choose another stream= or subject_prefix=, or add "${subject}" to the stream`,
    );
  }
  if (info.config.no_ack) {
    // It stores what is published and answers nothing: every event would wait out
    // timeout_ms, be retried and end as a dead letter, although the stream holds it.
    throw new ConfigError(
      settings.setting,
      `NATS stream "${stream}" is configured with no_ack: it sends no PubAck, which the dispatcher waits for to know an event is stored; choose another stream= or create it without no_ack`,
    );
  }
  return found;
}

/**
 * Where a stream made elsewhere, which the dispatcher uses as it is, keeps less than the
 * settings ask: a duplicate window shorter than `duplicate_window_s` (an event published
 * again after a crash later than that reaches consumers twice), fewer replicas than
 * `replicas`. A sentence each, with the command that mends it.
 */
export function streamShortfalls(info: StreamInfo, settings: NatsSettings): string[] {
  const { stream, duplicateWindowS, replicas } = settings;
  const shortfalls: string[] = [];
  // Nanoseconds; 0 (a stream made without one) is the server's default, 2 minutes.
  const windowS = (info.config.duplicate_window || nanos(120_000)) / 1e9;
  if (windowS < duplicateWindowS) {
    shortfalls.push(
      `NATS stream "${stream}" drops a repeated Nats-Msg-Id only within ${windowS} s, less than duplicate_window_s (${duplicateWindowS} s): an event published again after a crash later than that reaches consumers twice; widen it: nats stream edit ${stream} --dupe-window ${duplicateWindowS}s`,
    );
  }
  const kept = info.config.num_replicas || 1;
  if (kept < replicas) {
    shortfalls.push(
      `NATS stream "${stream}" keeps ${kept} cop${kept === 1 ? 'y' : 'ies'} of each event, fewer than replicas (${replicas}): it survives fewer lost servers than planned; add copies: nats stream edit ${stream} --replicas ${replicas}`,
    );
  }
  return shortfalls;
}

/** Throws a ConfigError if `error` is the server refusing a permission; `what` leads it. */
function forbidden(error: unknown, settings: NatsSettings, what: string, hint?: string): void {
  const denied = permissionDenied(error, settings.subjectPrefix);
  if (!denied) return;
  const more = hint ? `; ${hint}` : '';
  throw new ConfigError(
    settings.setting,
    `NATS at ${settings.location}: ${what}: ${denied}${more}`,
    {
      cause: error,
    },
  );
}

async function streamInfo(jsm: JetStreamManager, stream: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(stream);
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === 10059) return undefined;
    throw error;
  }
}
