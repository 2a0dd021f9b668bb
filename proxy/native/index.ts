// Loads the SO_ORIGINAL_DST addon (proxy/native/original_dst.c, built by proxy/native/build.sh
// at `npm install`). Without it the proxy cannot learn where intercepted connections were going,
// so loading fails with one clear error naming the command that builds it.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { ProxyError } from '../errors.ts';

export interface OriginalDst {
  address: string;
  port: number;
  family: 4 | 6;
}

interface Addon {
  originalDst(fd: number): OriginalDst;
  /** Absent from an addon built before it was added: rebuild with proxy/native/build.sh. */
  mallocTrim?(): boolean;
}

// In the source tree the addon is where node-gyp builds it; in dist/ (hack/build-dist.ts) it is
// copied next to the bundled code.
const CANDIDATES = [
  new URL('./build/Release/original_dst.node', import.meta.url).pathname,
  new URL('./original_dst.node', import.meta.url).pathname,
];
const ADDON_PATH = { pathname: CANDIDATES.find((p) => existsSync(p)) ?? CANDIDATES[0]! };
let addon: Addon | undefined;
let loadError: ProxyError | undefined;

/** Loads the addon once; throws WEFT_NATIVE_UNAVAILABLE with the fix when it cannot. */
export function loadOriginalDst(): Addon {
  if (addon) return addon;
  if (loadError) throw loadError;
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH.pathname) as Addon;
    return addon;
  } catch (cause) {
    loadError = new ProxyError(
      'WEFT_NATIVE_UNAVAILABLE',
      `weft-proxy cannot load its SO_ORIGINAL_DST addon (${ADDON_PATH.pathname}): ${(cause as Error).message}. ` +
        'Build it with `bash proxy/native/build.sh` (run by `npm install`); it needs a C compiler, make, python3 and ' +
        "Node headers (Debian's nodejs or libnode-dev).",
      { cause },
    );
    throw loadError;
  }
}

interface HandleWithFd {
  _handle?: { fd?: number };
}

/**
 * The destination the client originally asked for, for a connection iptables REDIRECTed to us.
 * Returns undefined for a connection that was not redirected (a direct connection to the port).
 */
export function originalDst(socket: Socket): OriginalDst | undefined {
  const fd = (socket as unknown as HandleWithFd)._handle?.fd;
  if (fd === undefined || fd < 0) return undefined;
  try {
    return loadOriginalDst().originalDst(fd);
  } catch (e) {
    if ((e as ProxyError).code === 'WEFT_NATIVE_UNAVAILABLE') throw e;
    return undefined;
  }
}

/**
 * Gives the free pages inside malloc's arenas back to the kernel (glibc malloc_trim): V8's
 * compilers free their zones on worker threads, and glibc keeps those pages in the threads' arenas
 * as the process's private memory (docs/proxy.md, Memory). True when something was released.
 */
export function mallocTrim(): boolean {
  return loadOriginalDst().mallocTrim?.() ?? false;
}
