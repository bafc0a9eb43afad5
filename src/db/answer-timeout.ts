/**
 * A connection PostgreSQL stops answering (a network partition, a host frozen or gone
 * after a failover) gives no error of its own: the socket stays open and a statement
 * waits until TCP gives up, many minutes later, or for ever when nothing was left to
 * resend. The dispatcher's statements are short, so one unanswered for long means the
 * connection is lost: it is dropped, and the statement fails as any lost connection does.
 */
export interface DatabaseTimeouts {
  /** A statement unanswered this long drops its connection and fails (code ETIMEDOUT). */
  answerMs: number;
  /**
   * Asks the server to end a dedicated session left idle this long (`idle_session_timeout`,
   * PostgreSQL 14 and later; ignored before), and to probe its client's socket (TCP
   * keepalives): a session whose process was cut off then ends on the server too, and the
   * session locks it held (partition ownership) are free for the others. The session's
   * owner must use it more often than this.
   */
  idleSessionMs?: number;
}

/** `work`, failing with ETIMEDOUT, its connection dropped, when unanswered within `ms`. */
export function answeredWithin<T>(
  // A node-postgres client, by shape: these declarations are public, and the types of
  // pg are not a dependency of an application that uses postgres.js or PGlite.
  client: object,
  ms: number | undefined,
  work: Promise<T>,
): Promise<T> {
  if (ms === undefined) return work;
  let timer: NodeJS.Timeout | undefined;
  const unanswered = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = Object.assign(
        new Error(`PostgreSQL did not answer within ${ms} ms; the connection is taken for lost`),
        { code: 'ETIMEDOUT' },
      );
      // The statement's own promise then fails too (connection terminated): nobody waits
      // on it any more, and the pool does not get the connection back.
      (
        client as unknown as { connection?: { stream?: { destroy(): void } } }
      ).connection?.stream?.destroy();
      reject(error);
    }, ms);
  });
  return Promise.race([work, unanswered]).finally(() => clearTimeout(timer));
}

/**
 * The server-side limits of a dedicated session, in one statement without parameters: an
 * older server has no `idle_session_timeout`, which is then left out.
 */
export function sessionLimits(idleSessionMs: number): string {
  const ms = Math.max(1, Math.floor(idleSessionMs));
  // Keepalives: idle 30 s, then every 10 s, 3 unanswered probes end the connection.
  return `SELECT CASE WHEN current_setting('server_version_num')::int >= 140000
    THEN set_config('idle_session_timeout', '${ms}', false) END,
  set_config('tcp_keepalives_idle', '30', false),
  set_config('tcp_keepalives_interval', '10', false),
  set_config('tcp_keepalives_count', '3', false)`;
}
