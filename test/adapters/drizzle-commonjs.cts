// A CommonJS module using the Drizzle adapter, compiled by `npm run typecheck`: Drizzle's
// CommonJS declarations (.d.cts) must fit the adapter's types as its ES module ones do
// (a Nest CLI project is CommonJS).
import nodePg = require('drizzle-orm/node-postgres');
import adapter = require('../../src/adapters/drizzle.js');

function executorOf(db: ReturnType<typeof nodePg.drizzle>) {
  return db.transaction(async (tx) => adapter.fromDrizzle(tx));
}

export = executorOf;
