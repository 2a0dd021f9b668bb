// The request body kept for a second try, whatever the transport (node:http and HTTP/2 in
// http/outbound.ts, the HTTP/1.1 fast paths in http1/conn.ts): while a body is sent to its first
// try, its chunks are kept up to REPLAY_LIMIT, so a try that reached no app (a connect failure, a
// peer sidecar's 502 WEFT_UPSTREAM_CONNECT) or that the route's retry policy retries can be sent
// again with it; a larger body is dropped from here and its request is not sent twice.

/**
 * The most request body bytes kept for a second try (64 KiB, as Linkerd keeps): a gRPC call or a
 * POST with a body up to this size can be sent again; a larger one cannot, once it has begun.
 */
export const REPLAY_LIMIT = 64 * 1024;

/** Where kept chunks are written: a try's body (a Writable or a socket). */
export interface ChunkSink {
  write(chunk: Buffer): boolean;
}

/**
 * The chunks of one request body sent so far, in order, while they fit in `limit`. The chunks
 * are kept as given (not copied): the caller must not reuse their memory.
 */
export class ReplayBuffer {
  readonly limit: number;
  #chunks: Buffer[] = [];
  #bytes = 0;
  #overflowed = false;

  constructor(limit = REPLAY_LIMIT) {
    this.limit = limit;
  }

  /** Whether every byte sent so far is kept (the body can be sent again). */
  get replayable(): boolean {
    return !this.#overflowed;
  }

  /** Bytes kept. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Keeps a chunk about to be sent; once the body outgrows the limit, everything is dropped and
   * nothing is kept from then on (false).
   */
  append(chunk: Buffer): boolean {
    if (this.#overflowed) return false;
    if (this.#bytes + chunk.length > this.limit) {
      this.#overflowed = true;
      this.#chunks = [];
      this.#bytes = 0;
      return false;
    }
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#bytes += chunk.length;
    }
    return true;
  }

  /**
   * Writes the kept chunks, in order, to the next try's body; false when the sink asked to wait
   * (its last write returned false: wait for its 'drain' before writing more).
   */
  replayInto(sink: ChunkSink): boolean {
    if (this.#overflowed) throw new Error('a body over the replay limit cannot be sent again');
    let ok = true;
    for (const c of this.#chunks) ok = sink.write(c);
    return ok;
  }
}
