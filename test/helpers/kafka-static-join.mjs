/**
 * `node kafka-static-join.mjs <bootstrap> <group> <group_instance_id>`: joins the group as
 * a static member under that name, prints the member id it got and exits without leaving,
 * so the name stays with that member id until its session times out (10 s). Run while
 * another member of the name is between its join and its sync, it fences that one.
 */
import { Consumer } from '@platformatic/kafka';

const [bootstrap, groupId, groupInstanceId] = process.argv.slice(2);
const consumer = new Consumer({
  clientId: 'static-join',
  bootstrapBrokers: [bootstrap],
  groupId,
  groupInstanceId,
  sessionTimeout: 10_000,
  rebalanceTimeout: 10_000,
  heartbeatInterval: 3_000,
});
await consumer.joinGroup({});
process.stdout.write(consumer.memberId ?? '');
process.exit(0);
