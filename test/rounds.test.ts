import { describe, expect, it, vi } from 'vitest';
import type { OutboxMessage, PublishResult } from '../src/brokers/broker.js';
import { MemoryBroker } from '../src/brokers/memory.js';
import { backoffDelayMs } from '../src/common/backoff.js';
import { BrokerUnavailableError } from '../src/common/errors.js';
import { publishInRounds } from '../src/dispatcher/rounds.js';
import { Wakeup } from '../src/dispatcher/wakeup.js';

let seq = 0;
function message(aggregateId: string): OutboxMessage {
  seq++;
  return {
    id: `id-${seq}`,
    seq: String(seq),
    aggregateType: 'lesson',
    aggregateId,
    eventType: 'lesson-published',
    payload: '{}',
    headers: {},
    partition: 0,
    occurredAt: '2026-01-01T00:00:00.000000Z',
    attempts: 0,
  };
}

describe('publishInRounds', () => {
  it('never puts two events of one aggregate in the same publish call, and keeps their order', async () => {
    const batch = [
      message('a'),
      message('b'),
      message('a'),
      message('c'),
      message('a'),
      message('b'),
    ];
    const calls: OutboxMessage[][] = [];
    const broker = new MemoryBroker();
    await broker.connect();
    const outcome = await publishInRounds(broker.name, batch, async (round) => {
      calls.push([...round]);
      return broker.publish(round);
    });
    for (const call of calls) {
      const aggregates = call.map((m) => m.aggregateId);
      expect(new Set(aggregates).size).toBe(aggregates.length);
    }
    expect(calls).toHaveLength(3);
    const order = (id: string) =>
      broker.messages.filter((m) => m.aggregateId === id).map((m) => Number(m.seq));
    for (const id of ['a', 'b', 'c']) {
      const seqs = order(id);
      expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    }
    expect(outcome.published).toHaveLength(6);
    expect(outcome.failed).toHaveLength(0);
  });

  it('holds back only the later events of a failed aggregate', async () => {
    const batch = [message('a'), message('b'), message('a'), message('b'), message('a')];
    const failing = batch[0]?.id;
    const broker = new MemoryBroker({
      onPublish: (m): PublishResult | undefined =>
        m.id === failing ? { ok: false, error: 'refused', permanent: true } : undefined,
    });
    await broker.connect();
    const outcome = await publishInRounds(broker.name, batch, (round) => broker.publish(round));
    expect(outcome.failed.map((f) => f.message.id)).toEqual([failing]);
    expect(outcome.failed[0]?.error).toBe('refused');
    expect(outcome.held.map((m) => m.id)).toEqual([batch[2]?.id, batch[4]?.id]);
    expect(outcome.published.map((m) => m.aggregateId)).toEqual(['b', 'b']);
  });
});

describe('publishInRounds against a slow broker', () => {
  it('starts no round past its deadline: the rest is held, in order, none of it sent', async () => {
    const batch = [...Array.from({ length: 5 }, () => message('a')), message('b'), message('b')];
    let clock = 0;
    const now = vi.spyOn(Date, 'now').mockImplementation(() => clock);
    try {
      const broker = new MemoryBroker();
      await broker.connect();
      // Each round takes 400 ms: rounds start at 0, 400 and 800; the next would at 1,200.
      const outcome = await publishInRounds(
        broker.name,
        batch,
        async (round) => {
          clock += 400;
          return broker.publish(round);
        },
        new Map(),
        1000,
      );
      const ids = (messages: readonly OutboxMessage[]) => messages.map((m) => m.id);
      expect(ids(broker.messages)).toEqual(ids(outcome.published));
      expect(ids(outcome.published).sort()).toEqual(
        ids(batch.slice(0, 3).concat(batch.slice(5))).sort(),
      );
      expect(ids(outcome.held)).toEqual(ids(batch.slice(3, 5)));
      expect(outcome.failed).toEqual([]);
    } finally {
      now.mockRestore();
    }
  });

  it('sends the first round however late it starts', async () => {
    const batch = [message('a'), message('a')];
    const broker = new MemoryBroker();
    await broker.connect();
    const outcome = await publishInRounds(
      broker.name,
      batch,
      (round) => broker.publish(round),
      new Map(),
      0,
    );
    expect(outcome.published.map((m) => m.id)).toEqual([batch[0]?.id]);
    expect(outcome.held.map((m) => m.id)).toEqual([batch[1]?.id]);
  });
});

describe('publishInRounds with odd rows and failing adapters', () => {
  it('fails the rows found unfit when claimed without sending them; holds back their aggregate', async () => {
    const batch = [message('a'), message('b'), message('a')];
    const broker = new MemoryBroker();
    await broker.connect();
    const unfit = new Map([
      [batch[0]?.seq as string, 'headers.traceparent: not a string (a number)'],
    ]);
    const outcome = await publishInRounds(
      broker.name,
      batch,
      (round) => broker.publish(round),
      unfit,
    );
    expect(outcome.failed).toEqual([
      {
        message: batch[0],
        error: 'headers.traceparent: not a string (a number)',
        permanent: true,
        invalid: true,
      },
    ]);
    expect(outcome.held.map((m) => m.id)).toEqual([batch[2]?.id]);
    expect(broker.messages.map((m) => m.id)).toEqual([batch[1]?.id]);
  });

  it('an adapter that throws on one message fails that message alone; the round is published again without it', async () => {
    const batch = [message('a'), message('b'), message('c')];
    const broker = new MemoryBroker();
    await broker.connect();
    const poison = batch[1]?.id;
    const outcome = await publishInRounds(broker.name, batch, (round) => {
      if (round.some((m) => m.id === poison)) throw new TypeError('k.trim is not a function');
      return broker.publish(round);
    });
    expect(outcome.published.map((m) => m.id).sort()).toEqual([batch[0]?.id, batch[2]?.id].sort());
    expect(outcome.failed).toEqual([
      {
        message: batch[1],
        error: 'the memory adapter failed on this event: k.trim is not a function',
        permanent: false,
      },
    ]);
  });

  it('a broker that is unavailable still fails the whole batch', async () => {
    const batch = [message('a'), message('b')];
    await expect(
      publishInRounds('memory', batch, async () => {
        throw new BrokerUnavailableError('down');
      }),
    ).rejects.toBeInstanceOf(BrokerUnavailableError);
  });
});

describe('backoffDelayMs', () => {
  it('doubles per attempt within half to all of the ceiling, and stops at the maximum', () => {
    expect(backoffDelayMs(0, 1000, 60_000, () => 0)).toBe(500);
    expect(backoffDelayMs(0, 1000, 60_000, () => 1)).toBe(1000);
    expect(backoffDelayMs(3, 1000, 60_000, () => 1)).toBe(8000);
    expect(backoffDelayMs(30, 1000, 60_000, () => 1)).toBe(60_000);
    expect(backoffDelayMs(1000, 1000, 60_000, () => 0.5)).toBe(45_000);
  });
});

describe('Wakeup', () => {
  // Whether a sleep has ended by the next turn of the event loop, long before any timer.
  const endsAtOnce = (sleep: Promise<boolean>) =>
    Promise.race([
      sleep.then(() => true),
      new Promise<boolean>((resolve) => setImmediate(() => resolve(false))),
    ]);

  it('keeps a wake that came with no sleeper for the next sleep only', async () => {
    const wakeup = new Wakeup();
    wakeup.wake();
    expect(await endsAtOnce(wakeup.sleep(60_000))).toBe(true);
    const second = wakeup.sleep(60_000);
    expect(await endsAtOnce(second)).toBe(false);
    wakeup.wake();
    await second;
  });

  it('ends a sleep early when woken, and says so', async () => {
    const wakeup = new Wakeup();
    const sleeping = wakeup.sleep(60_000);
    wakeup.wake();
    expect(await endsAtOnce(sleeping)).toBe(true);
    expect(await sleeping).toBe(true);
    expect(await wakeup.sleep(1)).toBe(false);
  });
});
