// How the proxy's Node process is started: the injector sets them as the sidecar's NODE_OPTIONS
// (so `weft proxy` gets them however it is launched), the tests and the benchmark pass the same.
// Small young-generation semispaces keep RSS low at a small cost in scavenges; the old-space cap
// makes a leak fail fast (and restart) rather than grow into the pod's memory limit.
export const PROXY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--max-old-space-size=128'];

/**
 * The sidecar's environment beyond its flags: two malloc arenas instead of glibc's default of
 * eight per core, which keep memory freed after a burst (socket and TLS buffers) as RSS; in the
 * benchmark 90 MB instead of 99 MB after bursts, with the same throughput.
 */
export const PROXY_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };
