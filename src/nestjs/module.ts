import { Inject, Injectable, Module } from '@nestjs/common';
import { OutboxHealthIndicator } from './health.js';
import { OutboxLifecycle } from './lifecycle.js';
import {
  ConfigurableOutboxModule,
  OUTBOX_MODULE_OPTIONS,
  type OutboxModuleOptions,
} from './options.js';
import { DISPATCHER, OUTBOX, OUTBOX_DATABASE } from './tokens.js';

/**
 * The outbox in a Nest application:
 *
 *   OutboxModule.forRoot({ database: process.env.DATABASE_URL, broker: 'nats://nats:4222' })
 *   OutboxModule.forRootAsync({ imports: [ConfigModule], inject: [ConfigService],
 *     useFactory: (config: ConfigService) => ({ database: config.get('DATABASE_URL'), … }) })
 *
 * provides the `Outbox` (`OUTBOX`, `@InjectOutbox()`), the database (`OUTBOX_DATABASE`),
 * the embedded dispatcher (`DISPATCHER`) and `OutboxHealthIndicator`; global unless
 * `isGlobal: false`. The dispatcher starts once the application has bootstrapped and stops
 * at shutdown (`app.close()`, or a signal after `app.enableShutdownHooks()`).
 */
export class OutboxModule extends ConfigurableOutboxModule {}

// Decorators applied as calls: the library is compiled without `experimentalDecorators`,
// and every provider is made by a factory, so no constructor parameter needs metadata.
// But the indicator: an application may list it in a module's own `providers`, as
// terminus's indicators are; Nest then makes it from the DISPATCHER this module provides.
Injectable()(OutboxHealthIndicator);
Inject(DISPATCHER)(OutboxHealthIndicator, undefined, 0);

Module({
  providers: [
    {
      provide: OutboxLifecycle,
      useFactory: (options: OutboxModuleOptions) => new OutboxLifecycle(options),
      inject: [OUTBOX_MODULE_OPTIONS],
    },
    {
      provide: OUTBOX,
      useFactory: (lifecycle: OutboxLifecycle) => lifecycle.outbox,
      inject: [OutboxLifecycle],
    },
    {
      provide: DISPATCHER,
      useFactory: (lifecycle: OutboxLifecycle) => lifecycle.dispatcher,
      inject: [OutboxLifecycle],
    },
    {
      provide: OUTBOX_DATABASE,
      useFactory: (lifecycle: OutboxLifecycle) => lifecycle.database,
      inject: [OutboxLifecycle],
    },
    {
      provide: OutboxHealthIndicator,
      useFactory: (lifecycle: OutboxLifecycle) => new OutboxHealthIndicator(lifecycle.dispatcher),
      inject: [OutboxLifecycle],
    },
  ],
  exports: [OUTBOX, DISPATCHER, OUTBOX_DATABASE, OutboxHealthIndicator],
})(OutboxModule);
