/**
 * A Kafka consumer's bookkeeping of offsets across rebalances, without a broker (the
 * rebalances themselves are in kafka-source.test.ts). What it drops of the messages its stream held at a join: those of
 * partitions the group gave away, and the ones held when a withdrawn partition was given
 * back (read again from the group's commit, they would come first and make the offsets
 * refuse the fresh fetch as delivered before). The stream hands the held messages out
 * before anything fetched after the join; this is that order, message by message.
 */
import { describe, expect, it } from 'vitest';
import { HeldAtJoin } from '../../src/brokers/kafka/offsets.js';

/** Which of the messages (partition keys, in the order they leave the stream) are kept. */
const kept = (held: HeldAtJoin, keys: readonly string[]) =>
  keys.map((key, i) => [key, i] as const).filter(([key]) => !held.drop(key));

describe('HeldAtJoin', () => {
  it('drops every message held at a give-back of that partition, the last one too', () => {
    const held = new HeldAtJoin();
    held.withdraw('P');
    expect(held.giveBack('P', 5)).toBe(true);
    // P@5..9 held, then P@5..14 fetched again from the commit (5).
    const keys = Array.from({ length: 15 }, () => 'P');
    expect(kept(held, keys).map(([, i]) => i)).toEqual([5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
  });

  it("counts a withdrawn partition's held messages too: none fetched afresh is dropped", () => {
    const held = new HeldAtJoin();
    held.withdraw('P');
    held.withdraw('Q');
    // The stream holds Q, Q, P, P, Q when P is given back; Q stays with another member.
    expect(held.giveBack('P', 5)).toBe(true);
    const keys = ['Q', 'Q', 'P', 'P', 'Q', 'P', 'P', 'P', 'R'];
    expect(kept(held, keys)).toEqual([
      ['P', 5],
      ['P', 6],
      ['P', 7],
      ['R', 8],
    ]);
  });

  it('drops nothing for a partition that was never withdrawn, and nothing once the held ones are out', () => {
    const held = new HeldAtJoin();
    expect(held.giveBack('P', 3)).toBe(false);
    expect(kept(held, ['P', 'P']).length).toBe(2);
    held.withdraw('P');
    held.giveBack('P', 0);
    expect(kept(held, ['P', 'P']).length).toBe(2);
  });
});
