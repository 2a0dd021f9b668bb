// The HTTP version the local app speaks on a port, for inbound requests that arrived as HTTP/2
// (h2c prior knowledge, or weft-h2 from a peer sidecar): the Service port's appProtocol or name
// (http, http2, grpc, …) when a Service of this pod declares it, else learnt once per port by
// sending the app the HTTP/2 preface and SETTINGS and reading what it answers. An HTTP/1.1 app
// answers with an HTTP/1.1 error (or nothing); an HTTP/2 one with its SETTINGS frame.
import net from 'node:net';
import type { ProxyConfig } from '../api/index.ts';
import { protocolForAppProtocol } from './detect.ts';
import { targetPort } from './table.ts';

export type AppHttp = 'h2' | 'http1';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** An empty SETTINGS frame: length 0, type 4, flags 0, stream 0. */
const SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
const FRAME_HEADER = 9;

/**
 * The protocol a Service port declares by appProtocol, or by its name as Istio reads it
 * (`<protocol>[-<suffix>]`: http, http2, grpc, grpc-web, h2c); undefined when neither says.
 */
export function declaredHttp(port: { name: string; appProtocol?: string | undefined }): AppHttp | undefined {
  const byAppProtocol = protocolForAppProtocol(port.appProtocol);
  if (byAppProtocol === 'h2' || byAppProtocol === 'http1') return byAppProtocol;
  if (byAppProtocol) return undefined;
  const prefix = port.name.toLowerCase().split('-', 1)[0];
  if (prefix === 'http') return 'http1';
  if (prefix === 'http2' || prefix === 'grpc' || prefix === 'h2c') return 'h2';
  return undefined;
}

/** What the Services selecting this pod (at `address`) declare for its port `port`. */
export function declaredForPod(
  config: ProxyConfig | undefined,
  address: string,
  port: number,
): AppHttp | undefined {
  for (const s of config?.services ?? [])
    for (const e of s.endpoints) {
      if (e.address !== address) continue;
      for (const p of s.ports) if (targetPort(e, p) === port) return declaredHttp(p);
    }
  return undefined;
}

/** Sends the HTTP/2 preface to host:port; 'h2' if a SETTINGS frame comes back, undefined if unreachable. */
export function probeHttp2(host: string, port: number, timeoutMs: number): Promise<AppHttp | undefined> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let got = Buffer.alloc(0);
    let connected = false;
    const finish = (v: AppHttp | undefined) => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    // No answer in time: not an HTTP/2 server (an HTTP/1.1 one may wait for more of its "request").
    const timer = setTimeout(() => finish(connected ? 'http1' : undefined), timeoutMs);
    s.on('connect', () => {
      connected = true;
      s.write(Buffer.concat([PREFACE, SETTINGS]));
    });
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length < FRAME_HEADER) return;
      const settings = got[3] === 0x04 && (got.readUInt32BE(5) & 0x7fffffff) === 0;
      finish(settings ? 'h2' : 'http1');
    });
    s.on('error', () => finish(connected ? 'http1' : undefined));
    s.on('close', () => finish(connected ? 'http1' : undefined));
  });
}

/**
 * Per port of the local app: declared, else probed once (an unreachable app is probed again next
 * time). Both are kept until clear(), which the proxy calls at each new config.
 */
export class AppProtocols {
  readonly #declared = new Map<string, AppHttp | undefined>();
  readonly #learnt = new Map<number, Promise<AppHttp | undefined>>();
  readonly #host: string;
  readonly #timeoutMs: number;

  constructor(host: string, timeoutMs: number) {
    this.#host = host;
    this.#timeoutMs = timeoutMs;
  }

  /** The app's protocol on `port` of the pod at `address`; undefined when the app cannot be reached. */
  async of(config: ProxyConfig | undefined, address: string, port: number): Promise<AppHttp | undefined> {
    const key = `${address}:${port}`;
    let declared = this.#declared.get(key);
    if (declared === undefined && !this.#declared.has(key)) {
      declared = declaredForPod(config, address, port);
      this.#declared.set(key, declared);
    }
    if (declared) return declared;
    let p = this.#learnt.get(port);
    if (!p) {
      p = probeHttp2(this.#host, port, this.#timeoutMs);
      this.#learnt.set(port, p);
      p.then((v) => {
        if (v === undefined) this.#learnt.delete(port);
      });
    }
    return p;
  }

  /** Forgets what was declared and learnt (a new config; the app may have been replaced). */
  clear(): void {
    this.#declared.clear();
    this.#learnt.clear();
  }
}
