// The addresses of this network namespace (the pod's): a connection to the outbound listener is
// accepted only from one of them, i.e. from a process of the pod whose connection the OUTPUT
// rule redirected, never from another host.
import { isIPv4 } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Now } from './clock.ts';

/** Re-reads the interfaces on a miss, at most this often (a pod's addresses rarely change). */
const REFRESH_MS = 1_000;

export class LocalAddresses {
  #set = new Set<string>();
  #readAt = Number.NEGATIVE_INFINITY;
  readonly #now: Now;
  readonly #read: () => string[];

  constructor(now: Now, read: () => string[] = interfaceAddresses) {
    this.#now = now;
    this.#read = read;
  }

  has(address: string | undefined): boolean {
    if (!address) return false;
    const a = address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
    if (this.#set.has(a)) return true;
    if (this.#now() - this.#readAt < REFRESH_MS) return false;
    this.#readAt = this.#now();
    this.#set = new Set(this.#read());
    return this.#set.has(a);
  }
}

function interfaceAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}
