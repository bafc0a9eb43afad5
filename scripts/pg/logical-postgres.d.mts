export interface LogicalPostgresOptions {
  /** Where the scratch directory is made. Default: the system's temp directory. */
  parentDir?: string;
  /** More `postgresql.conf` settings (name → value), after the built-in ones. */
  settings?: Record<string, string>;
  /**
   * Files written into the data directory before the server starts (name → content), mode
   * 0600 and owned by the server's OS user: certificates and keys that `settings` name
   * (`ssl_cert_file: 'server.crt'`).
   */
  files?: Record<string, string>;
  /** pg_hba.conf's lines instead of initdb's (trust on 127.0.0.1). */
  hba?: string[];
  /** The `postgres` role's password (set by initdb, SCRAM); none by default. */
  password?: string;
}

/** A private PostgreSQL server with `wal_level = logical`, trust auth on 127.0.0.1 unless `hba` says otherwise. */
export interface LogicalPostgres {
  /** Its own TCP port on 127.0.0.1 (no Unix socket). */
  readonly port: number;
  /** `postgres://postgres@127.0.0.1:<port>/postgres`. */
  readonly url: string;
  /** The scratch directory (data directory and server log), removed by `stop()`. */
  readonly dir: string;
  /** Stops the server (fast shutdown) and removes its directory. */
  stop(): Promise<void>;
}

/**
 * initdb into a scratch directory, `wal_level = logical`, fsync and synchronous commit on,
 * started with pg_ctl on a free port. Stopped and removed by `stop()`, or when the process
 * exits or gets SIGINT/SIGTERM first. As root, the server runs as the `postgres` OS user.
 */
export function startLogicalPostgres(options?: LogicalPostgresOptions): Promise<LogicalPostgres>;
