/**
 * `edupulse-outbox/nestjs`: the outbox as a NestJS module. A separate entry point, so
 * that only applications that use Nest load it; `@nestjs/common` and `@nestjs/core` are
 * its peer dependencies. `OutboxHealthIndicator` answers in `@nestjs/terminus`'s format
 * without loading terminus.
 */
export {
  type OutboxHealthDetails,
  OutboxHealthIndicator,
  type OutboxHealthOptions,
  type OutboxHealthResult,
} from './health.js';
export { OutboxModule } from './module.js';
export type {
  OutboxModuleAsyncOptions,
  OutboxModuleForRootOptions,
  OutboxModuleOptions,
} from './options.js';
export {
  DISPATCHER,
  InjectDispatcher,
  InjectOutbox,
  InjectOutboxDatabase,
  OUTBOX,
  OUTBOX_DATABASE,
} from './tokens.js';
