// A TCP port on 127.0.0.1 that nothing listens on now, for a private server to take: the
// scripts' private PostgreSQL and the tests' private servers. Plain JavaScript with a .d.mts
// beside it, so that bench/, scripts/ and test/ can all import it.

import { createServer } from 'node:net';

export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}
