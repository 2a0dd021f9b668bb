// Workload identity in the proxy: the certificate, key and trust bundle the operator writes
// to the identity Secret (projected at PROXY.identityDir), turned into TLS 1.3 contexts for
// sidecar-to-sidecar mutual TLS. Files are re-read when the kubelet swaps them; new
// connections use the new context, open ones keep theirs, so rotation drops nothing.
import { createPrivateKey, type KeyObject, randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync, watch } from 'node:fs';
import { join } from 'node:path';
import type tls from 'node:tls';
import { CodedError } from '../../api/errors.ts';
import { splitPem, type TrustSummary } from '../../api/pem.ts';
import { tls as lazyTls } from '../builtins.ts';

/**
 * ALPN of the protocol carried inside sidecar-to-sidecar TLS (as Istio's istio-h2 etc.). `mux`:
 * HTTP/2 framing whose streams carry an HTTP/1.1 app's requests (the inbound side speaks
 * HTTP/1.1 to the app); `h2`: an HTTP/2 app's own streams.
 */
export const ALPN = {
  // First: a server picks the first of its own list the client offers, and a client that can
  // multiplex offers [mux, http1] (an older sidecar without mux answers http1).
  mux: 'weft-h2-http/1.1',
  h2: 'weft-h2',
  http1: 'weft-http/1.1',
  // Opaque TCP whose accepting sidecar writes one byte (TCP_ACK) once its app took the
  // connection, before any of the app's: until then the caller's sidecar sends nothing, so a
  // connection its app refused is opened to another endpoint. Before `tcp`, which older
  // sidecars answer instead.
  tcpAck: 'weft-tcp-ack',
  tcp: 'weft-tcp',
} as const;
/** The byte a sidecar writes first on a `tcpAck` connection once its app accepted it. */
export const TCP_ACK = 0x06;
export type InnerProtocol = keyof typeof ALPN;
export const protocolOfAlpn = (alpn: string | false | null | undefined): InnerProtocol | undefined =>
  (Object.entries(ALPN).find(([, v]) => v === alpn)?.[0] as InnerProtocol | undefined) ?? undefined;

export class IdentityError extends CodedError {}

export interface IdentityMaterial {
  /** Leaf and intermediates, PEM. */
  certChain: string;
  key: string;
  /** Trusted roots, PEM (the trust bundle). */
  roots: string;
}

/** A workload certificate as the admin endpoints report it: public facts, no key material. */
export interface CertificateSummary {
  spiffeId: string;
  serialNumber: string;
  issuer: string;
  /** ISO 8601. */
  notBefore: string;
  notAfter: string;
}

/** The SPIFFE ID in a certificate's URI SAN, or undefined. */
export function spiffeIdOf(cert: { subjectaltname?: string } | undefined): string | undefined {
  const san = cert?.subjectaltname ?? '';
  for (const part of san.split(',')) {
    const p = part.trim();
    if (p.startsWith('URI:spiffe://')) return p.slice(4);
  }
  return undefined;
}

/** The SPIFFE ID of the peer on a TLS socket, only when the peer's chain was verified. */
export function peerSpiffeId(socket: tls.TLSSocket): string | undefined {
  if (!socket.authorized) return undefined;
  return spiffeIdOf(socket.getPeerCertificate());
}

export function readIdentity(dir: string, extraRoots: string[] = []): IdentityMaterial {
  const file = (name: string) => {
    const p = join(dir, name);
    if (!existsSync(p))
      throw new IdentityError(
        'WEFT_IDENTITY_MISSING',
        `${p} is missing: is the identity Secret mounted at ${dir}?`,
      );
    return readFileSync(p, 'utf8');
  };
  return {
    certChain: file('tls.crt'),
    key: file('tls.key'),
    roots: [file('ca.crt'), ...extraRoots].join('\n'),
  };
}

/**
 * The proxy's identity, reloaded from `dir` when its files change (watching the directory,
 * as the kubelet swaps `..data`). `onReload` is told of each reload or failure; a failed
 * reload keeps the previous identity.
 */
export class WorkloadIdentity {
  #material: IdentityMaterial;
  #client: tls.SecureContext;
  #stamp: string;
  #trust: TrustSummary | undefined;
  readonly #dir: string;
  #watcher: ReturnType<typeof watch> | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #onReload: (err?: Error) => void;
  readonly #servers = new Set<tls.Server>();
  /** The SPIFFE ID this proxy presents. */
  id: string;

  constructor(dir: string, onReload: (err?: Error) => void = () => {}) {
    this.#dir = dir;
    this.#onReload = onReload;
    this.#material = readIdentity(dir);
    [this.#client, this.id] = this.#contexts(this.#material);
    this.#stamp = this.#currentStamp();
  }

  #currentStamp(): string {
    try {
      return ['tls.crt', 'tls.key', 'ca.crt'].map((f) => statSync(join(this.#dir, f)).mtimeMs).join(':');
    } catch {
      return '';
    }
  }

  /** The client context (parsing it also validates the material) and the SPIFFE ID. */
  #contexts(m: IdentityMaterial): [tls.SecureContext, string] {
    let leaf: X509Certificate;
    let key: KeyObject;
    try {
      leaf = new X509Certificate(m.certChain);
      key = createPrivateKey(m.key);
    } catch (err) {
      throw new IdentityError(
        'WEFT_IDENTITY_INVALID',
        `the identity in ${this.#dir} is not usable: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    // Checked first for a precise error: the files were read between two renames.
    if (!leaf.checkPrivateKey(key)) {
      throw new IdentityError(
        'WEFT_IDENTITY_MISMATCH',
        `tls.key in ${this.#dir} does not belong to tls.crt (mid-update?); keeping the previous identity`,
      );
    }
    let client: tls.SecureContext;
    try {
      client = lazyTls().createSecureContext({
        cert: m.certChain,
        key: m.key,
        ca: m.roots,
        minVersion: 'TLSv1.3',
      });
    } catch (err) {
      throw new IdentityError(
        'WEFT_IDENTITY_INVALID',
        `the identity in ${this.#dir} is not usable: ${(err as Error).message}`,
        { cause: err },
      );
    }
    const id = spiffeIdOf({ subjectaltname: leaf.subjectAltName });
    if (!id)
      throw new IdentityError(
        'WEFT_IDENTITY_NO_SPIFFE',
        `the certificate in ${this.#dir} has no spiffe:// URI SAN`,
      );
    return [client, id];
  }

  /** Re-reads the files now; keeps the previous identity if they are incomplete or invalid. */
  reload(): boolean {
    try {
      const m = readIdentity(this.#dir);
      const [client, id] = this.#contexts(m);
      this.#material = m;
      this.#trust = undefined;
      this.#client = client;
      this.id = id;
      // New ticket keys too: a session ticket never outlives the identity it was issued under
      // (a peer resuming one would skip the new certificate's checks).
      for (const s of this.#servers) {
        s.setSecureContext({ cert: m.certChain, key: m.key, ca: m.roots, minVersion: 'TLSv1.3' });
        s.setTicketKeys(randomBytes(48));
      }
      this.#onReload();
      return true;
    } catch (err) {
      this.#onReload(err as Error);
      return false;
    }
  }

  /** Watches the directory and reloads after changes settle (50 ms), until close(). */
  watch(): this {
    this.#watcher = watch(this.#dir, () => {
      clearTimeout(this.#timer);
      this.#timer = setTimeout(() => {
        const stamp = this.#currentStamp();
        if (stamp !== this.#stamp) {
          this.#stamp = stamp;
          this.reload();
        }
      }, 50);
    });
    return this;
  }

  close(): void {
    this.#watcher?.close();
    clearTimeout(this.#timer);
  }

  /** The client context outbound connections use now (it changes with each reload). */
  get clientContext(): tls.SecureContext {
    return this.#client;
  }

  get material(): IdentityMaterial {
    return this.#material;
  }

  /** The roots this identity trusts and the one its certificate comes from (computed per reload). */
  get trust(): TrustSummary {
    this.#trust ??= trustSummary(this.#material);
    return this.#trust;
  }

  /** The leaf certificate's public facts (what `weftctl proxy-config` shows); never the key. */
  certificate(): CertificateSummary {
    const leaf = new X509Certificate(this.#material.certChain);
    return {
      spiffeId: this.id,
      serialNumber: leaf.serialNumber,
      issuer: leaf.issuer,
      notBefore: new Date(leaf.validFrom).toISOString(),
      notAfter: new Date(leaf.validTo).toISOString(),
    };
  }

  /** Options for an inbound TLS server: client certificates required and verified. */
  serverOptions(alpn: string[] = Object.values(ALPN)): tls.TlsOptions {
    // Options rather than this.#server: a SecureContext made by createSecureContext fails
    // server handshakes with ECDSA keys ("no suitable signature algorithm") in Node 24.
    return {
      cert: this.#material.certChain,
      key: this.#material.key,
      ca: this.#material.roots,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      ALPNProtocols: alpn,
    };
  }

  /** Registers a TLS server whose context follows reloads. */
  track(server: tls.Server): void {
    this.#servers.add(server);
    server.once('close', () => this.#servers.delete(server));
  }

  /**
   * Connects to a peer sidecar with mutual TLS and verifies that it presents `expectedId`.
   * The socket emits 'error' with code WEFT_PEER_IDENTITY when the peer is someone else.
   */
  connect(opts: {
    host: string;
    port: number;
    expectedId?: string;
    /** The inner protocols offered, preferred first (the peer picks one). */
    protocol: InnerProtocol | InnerProtocol[];
    /** A session of an earlier connection to this peer (TLS resumption), from `sessionFor`. */
    session?: Buffer;
  }): tls.TLSSocket {
    const expected = opts.expectedId;
    const protocols = Array.isArray(opts.protocol) ? opts.protocol : [opts.protocol];
    const sock = lazyTls().connect({
      host: opts.host,
      port: opts.port,
      secureContext: this.#client,
      minVersion: 'TLSv1.3',
      ALPNProtocols: protocols.map((p) => ALPN[p]),
      servername: undefined,
      session: opts.session,
      // Peers are named by SPIFFE ID, not DNS: the chain is verified against the bundle by
      // OpenSSL; this replaces only the hostname check. A resumed session is checked the same
      // way against the certificate it was made with, and refused once that one has expired.
      checkServerIdentity: (_host, cert) => {
        const id = spiffeIdOf(cert);
        if (!id) return new IdentityError('WEFT_PEER_IDENTITY', 'the peer certificate has no SPIFFE ID');
        if (cert.valid_to && Date.parse(cert.valid_to) < Date.now())
          return new IdentityError('WEFT_PEER_IDENTITY', `the peer certificate expired at ${cert.valid_to}`);
        if (expected && id !== expected) {
          return new IdentityError(
            'WEFT_PEER_IDENTITY',
            `the peer presented ${id}, but the endpoint's identity is ${expected}`,
          );
        }
        return undefined;
      },
    });
    sock.setNoDelay(true);
    return sock;
  }
}

/** The roots an identity trusts and the one its chain comes from (api/pem.ts TrustSummary). */
export function trustSummary(m: IdentityMaterial): TrustSummary {
  const parse = (text: string) => splitPem(text).map((p) => new X509Certificate(p));
  const roots = parse(m.roots);
  const top = parse(m.certChain).at(-1);
  const signer = top && roots.find((r) => top.checkIssued(r) && top.verify(r.publicKey));
  return {
    roots: [...new Set(roots.map((r) => r.fingerprint256))].sort(),
    ...(signer ? { signedBy: signer.fingerprint256 } : {}),
  };
}

/** Whether the first bytes of a connection are a TLS ClientHello (record type 22, version 3.x). */
export function looksLikeTls(first: Buffer): boolean {
  return first.length >= 3 && first[0] === 0x16 && first[1] === 0x03 && first[2]! <= 0x04;
}
