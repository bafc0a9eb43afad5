import type { Channel, ChannelModel } from 'amqplib';
import { withTimeout } from '../../common/timeout.js';

/** The AMQP reply code a server's refusal carries (403 ACCESS_REFUSED, 404, 406, …), if any. */
export function replyCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' ? code : undefined;
}

/**
 * Runs `call` on a channel opened for it and closed after, since a refusal closes the
 * channel it came on. Resolves with the server's refusal (an error carrying an AMQP reply
 * code), or undefined when `call` succeeded; anything else (a timeout, the connection
 * lost) rejects.
 */
export async function onOwnChannel(
  model: ChannelModel,
  timeoutMs: number,
  call: (channel: Channel) => Promise<unknown>,
): Promise<Error | undefined> {
  const channel = await withTimeout(model.createChannel(), timeoutMs);
  // The refusal also comes as an 'error' event, which must have a listener.
  channel.on('error', () => {});
  try {
    await withTimeout(call(channel), timeoutMs);
  } catch (error) {
    if (replyCode(error) !== undefined) return error as Error;
    throw error;
  }
  await withTimeout(channel.close(), timeoutMs).catch(() => {});
  return undefined;
}

/**
 * Declares something with `declare`; if the user may not (ACCESS_REFUSED: no configure
 * permission, as when an administrator made it), `find` checks passively that it exists.
 * Resolves with the refusal that stands (the declare's, or the passive check's 404 with
 * the declare's refusal as its cause), or undefined when it exists.
 */
export async function declareOrFind(
  model: ChannelModel,
  timeoutMs: number,
  declare: (channel: Channel) => Promise<unknown>,
  find: (channel: Channel) => Promise<unknown>,
): Promise<{ refused: Error; missing: boolean } | undefined> {
  const refused = await onOwnChannel(model, timeoutMs, declare);
  if (refused === undefined) return undefined;
  if (replyCode(refused) !== 403) return { refused, missing: false };
  const missing = await onOwnChannel(model, timeoutMs, find);
  if (missing === undefined) return undefined;
  return replyCode(missing) === 404
    ? { refused, missing: true }
    : { refused: missing, missing: false };
}
