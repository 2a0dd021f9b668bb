// How the proxy's Node process is started: the injector puts these in the container's command
// (`node ${PROXY_NODE_FLAGS} proxy/main.ts`), the tests and the benchmark use the same ones.
// Small young-generation semispaces keep RSS low at a small cost in scavenges; the old-space cap
// makes a leak fail fast (and restart) rather than grow into the pod's memory limit.
export const PROXY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--max-old-space-size=128'];
