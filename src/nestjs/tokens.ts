import { Inject } from '@nestjs/common';

/** The `Outbox` (`createOutbox({ schema })`): `@Inject(OUTBOX) outbox: Outbox`. */
export const OUTBOX = Symbol('OUTBOX');
/**
 * The embedded `Dispatcher`, `null` with `dispatch: false`: `@Inject(DISPATCHER)`. The
 * module starts and stops it; subscribe to its events, read its `health()` and `stats`.
 */
export const DISPATCHER = Symbol('DISPATCHER');
/**
 * The module's `Database` (the one given, or the one it opened from a connection string),
 * for `database.transaction(async (tx) => { …; await outbox.enqueue(tx, event) })`.
 */
export const OUTBOX_DATABASE = Symbol('OUTBOX_DATABASE');

/** `constructor(@InjectOutbox() private readonly outbox: Outbox)`. */
export const InjectOutbox = () => Inject(OUTBOX);
/** `constructor(@InjectDispatcher() private readonly dispatcher: Dispatcher | null)`. */
export const InjectDispatcher = () => Inject(DISPATCHER);
/** `constructor(@InjectOutboxDatabase() private readonly database: Database)`. */
export const InjectOutboxDatabase = () => Inject(OUTBOX_DATABASE);
