// @ts-check
// The application's module: the outbox, configured from the environment when the
// application starts (forRootAsync; a ConfigService would be injected the same way), and
// the service that publishes lessons.
import { Module } from '@nestjs/common';
import { OutboxModule } from 'edupulse-outbox/nestjs';
import { LessonsService } from './lessons.service.mjs';

export class AppModule {}
Module({
  imports: [
    OutboxModule.forRootAsync({
      useFactory: () => ({
        // A connection string: the module opens the pool and closes it at shutdown.
        database: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
        // log: prints each event as a CloudEvent (NDJSON) on stdout; or nats://…, amqp://…, kafka://…
        broker: process.env.OUTBOX_BROKER_URL ?? 'log:',
        source: '/edupulse/lessons',
        // The outbox tables in schema "public", created or brought up to date at start.
        migrate: true,
      }),
    }),
  ],
  providers: [LessonsService],
})(AppModule);
