/** A TCP port on 127.0.0.1 that nothing listens on now, for a private server to take. */
export function freePort(): Promise<number>;
