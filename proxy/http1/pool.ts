// One keyed pool of idle keep-alive upstream connections for both fast paths: outbound by
// endpoint (address, port and the peer identity for mTLS), inbound by the local app's port.
import net from 'node:net';

/** Idle keep-alive upstream connections by key (an endpoint and how it is reached). */
export class KeyedPool<K> {
  readonly #idle = new Map<K, net.Socket[]>();
  readonly #drops = new WeakMap<net.Socket, () => void>();
  readonly #idleMs: number;

  constructor(idleMs: number) {
    this.#idleMs = idleMs;
  }

  /** An idle connection for `key`, or a new one from `connect`. */
  acquireWith(key: K, connect: () => net.Socket): { socket: net.Socket; reused: boolean } {
    const list = this.#idle.get(key);
    while (list && list.length > 0) {
      const s = list.pop()!;
      const drop = this.#drops.get(s);
      if (drop) {
        s.off('close', drop);
        s.off('error', drop);
        s.off('timeout', drop);
        this.#drops.delete(s);
      }
      s.setTimeout(0);
      if (!s.destroyed && s.readyState === 'open') return { socket: s, reused: true };
      s.destroy();
    }
    return { socket: connect(), reused: false };
  }

  /** Drops the idle connections of keys `keep` says no to (endpoints gone from the config). */
  retain(keep: (key: K) => boolean): void {
    for (const [k, list] of this.#idle) {
      if (keep(k)) continue;
      for (const s of list) s.destroy();
      this.#idle.delete(k);
    }
  }

  /** Takes a connection back after removing every data/end/close/error/drain listener on it. */
  release(key: K, s: net.Socket): void {
    s.removeAllListeners('data');
    s.removeAllListeners('end');
    s.removeAllListeners('close');
    s.removeAllListeners('error');
    s.removeAllListeners('drain');
    this.park(key, s);
  }

  /** Takes a connection back whose user has removed its own listeners (TLS sockets keep theirs). */
  park(key: K, s: net.Socket): void {
    let list = this.#idle.get(key);
    if (!list) {
      list = [];
      this.#idle.set(key, list);
    }
    if (list.length >= 256) {
      s.destroy();
      return;
    }
    const drop = () => {
      const i = list.indexOf(s);
      if (i >= 0) list.splice(i, 1);
      s.destroy();
    };
    this.#drops.set(s, drop);
    s.on('error', drop);
    s.on('close', drop);
    s.setTimeout(this.#idleMs, drop);
    s.resume();
    list.push(s);
  }

  close(): void {
    for (const list of this.#idle.values()) for (const s of list) s.destroy();
    this.#idle.clear();
  }
}

/** Idle keep-alive connections to the local app, per port. */
export class LocalPool extends KeyedPool<number> {
  readonly #host: string;

  constructor(host: string, idleMs: number) {
    super(idleMs);
    this.#host = host;
  }

  acquire(port: number): { socket: net.Socket; reused: boolean } {
    return this.acquireWith(port, () => {
      const socket = net.connect({ host: this.#host, port });
      socket.setNoDelay(true);
      return socket;
    });
  }
}
