// `weft proxy` (the sidecar) and `weft init` (the init container's iptables rules) as commander
// subcommands for cmd/weft.ts; proxy/main.ts runs the first standalone (`node proxy/main.ts`).
// Every flag also reads a WEFT_* environment variable, which is what the injector sets.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Command } from 'commander';
import { PROXY, PROXY_V8_FLAGS } from '../api/constants.ts';
import { inClusterAccess, SERVICE_ACCOUNT_DIR } from './apisource.ts';
import { DEFAULT_LIMITS } from './context.ts';
import { loadOriginalDst, mallocTrim } from './native/index.ts';
import { startSidecar } from './sidecar.ts';

/**
 * How often the sidecar gives malloc's free pages back to the kernel (native/index.ts mallocTrim):
 * what V8's compilers and a burst's sockets freed stays private memory otherwise.
 */
const MALLOC_TRIM_MS = 10_000;

const int = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`not a port or count: ${v}`);
  return n;
};

interface ProxyFlags {
  configDir: string;
  podInfoDir: string;
  identityDir: string;
  namespace: string;
  podName: string;
  workload?: string;
  outboundPort: number;
  inboundPort: number;
  adminPort: number;
  healthPort: number;
  maxConnections: number;
  headersTimeoutMs: number;
  detectTimeoutMs: number;
  handshakeTimeoutMs: number;
  connectTimeoutMs: number;
  muxConnections: number;
  muxStreams: number;
  maxHeaderBytes: number;
  pollMs: number;
  apiserver?: string;
  tokenDir: string;
  gateway?: boolean;
  gatewayConfig: string;
  gatewayCerts: string;
  gatewayConfigmap?: string;
}

export function proxyCommand(name = 'proxy'): Command {
  const env = process.env;
  return new Command(name)
    .description("Run the Weft sidecar proxy (as UID 1337, behind the init container's iptables rules)")
    .option('--config-dir <dir>', 'projected ProxyConfig ConfigMaps', env.WEFT_CONFIG_DIR ?? PROXY.configDir)
    .option('--pod-info-dir <dir>', 'downward-API files (labels)', env.WEFT_POD_INFO_DIR ?? PROXY.podInfoDir)
    .option(
      '--identity-dir <dir>',
      'workload certificate (tls.crt, tls.key, ca.crt)',
      env.WEFT_IDENTITY_DIR ?? PROXY.identityDir,
    )
    .option('--namespace <ns>', 'pod namespace', env.WEFT_NAMESPACE ?? env.POD_NAMESPACE ?? 'default')
    .option('--pod-name <name>', 'pod name', env.WEFT_POD_NAME ?? env.POD_NAME ?? env.HOSTNAME ?? 'unknown')
    .option('--workload <name>', 'workload name for metrics (default: from labels)', env.WEFT_WORKLOAD)
    .option(
      '--outbound-port <n>',
      'outbound listener',
      int,
      Number(env.WEFT_OUTBOUND_PORT ?? PROXY.outboundPort),
    )
    .option('--inbound-port <n>', 'inbound listener', int, Number(env.WEFT_INBOUND_PORT ?? PROXY.inboundPort))
    .option('--admin-port <n>', 'admin (loopback)', int, Number(env.WEFT_ADMIN_PORT ?? PROXY.adminPort))
    .option('--health-port <n>', 'health and metrics', int, Number(env.WEFT_HEALTH_PORT ?? PROXY.healthPort))
    .option(
      '--max-connections <n>',
      'downstream connections per listener',
      int,
      Number(env.WEFT_MAX_CONNECTIONS ?? 20000),
    )
    .option(
      '--headers-timeout-ms <n>',
      'time for a client to send request headers (408 after)',
      int,
      Number(env.WEFT_HEADERS_TIMEOUT_MS ?? 10000),
    )
    .option(
      '--detect-timeout-ms <n>',
      "time for a client's first bytes (protocol detection); a silent connection is closed after it",
      int,
      Number(env.WEFT_DETECT_TIMEOUT_MS ?? 10000),
    )
    .option(
      '--handshake-timeout-ms <n>',
      'time for an inbound mTLS handshake to complete, from its first byte; closed after it',
      int,
      Number(env.WEFT_HANDSHAKE_TIMEOUT_MS ?? 10000),
    )
    .option(
      '--connect-timeout-ms <n>',
      'time for a connection to an upstream to open; a try that times out is a connect failure',
      int,
      Number(env.WEFT_CONNECT_TIMEOUT_MS ?? 1000),
    )
    .option(
      '--mux-connections <n>',
      'HTTP/2 connections per peer sidecar carrying HTTP/1.1 requests over mTLS (0: HTTP/1.1 over mTLS, no mux)',
      int,
      Number(env.WEFT_MUX_CONNECTIONS ?? DEFAULT_LIMITS.muxConnections),
    )
    .option(
      '--mux-streams <n>',
      'streams open on a mux connection before another is opened (up to --mux-connections)',
      int,
      Number(env.WEFT_MUX_STREAMS ?? DEFAULT_LIMITS.muxStreams),
    )
    .option(
      '--max-header-bytes <n>',
      'request header bytes (431 beyond)',
      int,
      Number(env.WEFT_MAX_HEADER_BYTES ?? 16384),
    )
    .option('--poll-ms <n>', 'config directory poll interval', int, Number(env.WEFT_CONFIG_POLL_MS ?? 2000))
    .option(
      '--apiserver <url>',
      'apiserver for the config fast path (default: in-cluster KUBERNETES_SERVICE_HOST; none: volume only)',
      env.WEFT_APISERVER,
    )
    .option(
      '--token-dir <dir>',
      'ServiceAccount token and ca.crt for the apiserver',
      env.WEFT_TOKEN_DIR ?? SERVICE_ACCOUNT_DIR,
    )
    .option('--gateway', "gateway mode: serve a Gateway's listeners (docs/ingress.md), no interception")
    .option(
      '--gateway-config <file>',
      "the Gateway's routing table (gateway mode)",
      env.WEFT_GATEWAY_CONFIG ?? '/etc/weft/gateway/gateway.json',
    )
    .option(
      '--gateway-certs <dir>',
      "the HTTPS listeners' certificates and keys, PEM files the routing table names (gateway mode)",
      env.WEFT_GATEWAY_CERTS ?? '/etc/weft/gateway-tls',
    )
    .option(
      '--gateway-configmap <name>',
      "the Gateway's ConfigMap, watched through the apiserver as well as read from the volume (gateway mode; none: volume only)",
      env.WEFT_GATEWAY_CONFIGMAP,
    )
    .action(async (o: ProxyFlags) => {
      const v8 = process.getBuiltinModule('node:v8');
      for (const f of PROXY_V8_FLAGS) v8.setFlagsFromString(f);
      try {
        loadOriginalDst();
      } catch (e) {
        console.error((e as Error).message);
        process.exit(2);
      }
      const sidecar = await startSidecar({
        configDir: o.configDir,
        podInfoDir: o.podInfoDir,
        identityDir: o.identityDir,
        namespace: o.namespace,
        podName: o.podName,
        workload: o.workload,
        ports: { outbound: o.outboundPort, inbound: o.inboundPort, admin: o.adminPort, health: o.healthPort },
        limits: {
          maxConnections: o.maxConnections,
          headersTimeoutMs: o.headersTimeoutMs,
          detectTimeoutMs: o.detectTimeoutMs,
          handshakeTimeoutMs: o.handshakeTimeoutMs,
          connectTimeoutMs: o.connectTimeoutMs,
          muxConnections: o.muxConnections,
          muxStreams: o.muxStreams,
          maxHeaderBytes: o.maxHeaderBytes,
        },
        pollMs: o.pollMs,
        gatewayConfig: o.gateway ? o.gatewayConfig : undefined,
        gatewayCerts: o.gateway ? o.gatewayCerts : undefined,
        gatewayConfigMap: o.gateway ? o.gatewayConfigmap : undefined,
        apiServer: o.apiserver
          ? { server: o.apiserver, tokenFile: join(o.tokenDir, 'token'), caFile: join(o.tokenDir, 'ca.crt') }
          : inClusterAccess(env, o.tokenDir),
      });
      setInterval(mallocTrim, MALLOC_TRIM_MS).unref();
      // One request's bug must never take the pod's traffic down with it: log, count, keep serving.
      process.on('uncaughtException', (err) => {
        console.error(
          JSON.stringify({
            level: 50,
            msg: 'uncaught exception in weft-proxy; still serving',
            err: err.stack,
          }),
        );
        sidecar.metrics.proxyErrors.inc({ direction: 'none', code: 'UNCAUGHT' });
      });
      process.on('unhandledRejection', (err) => {
        console.error(
          JSON.stringify({
            level: 50,
            msg: 'unhandled rejection in weft-proxy; still serving',
            err: String(err),
          }),
        );
        sidecar.metrics.proxyErrors.inc({ direction: 'none', code: 'UNCAUGHT' });
      });
      let stopping = false;
      for (const sig of ['SIGTERM', 'SIGINT'] as const) {
        process.on(sig, () => {
          if (stopping) process.exit(1);
          stopping = true;
          sidecar.drain().then(
            () => process.exit(0),
            () => process.exit(1),
          );
        });
      }
    });
}

/** `weft init`: installs (or with --clean removes) the iptables rules; settings from WEFT_* env. */
export function initCommand(name = 'init'): Command {
  return new Command(name)
    .description(
      "Install the iptables rules that send the pod's TCP traffic through weft-proxy (root, NET_ADMIN)",
    )
    .option('--clean', 'remove the rules instead')
    .action((o: { clean?: boolean }) => {
      const script = new URL('./iptables.sh', import.meta.url).pathname;
      const r = spawnSync('sh', [script, ...(o.clean ? ['--clean'] : [])], { stdio: 'inherit' });
      process.exit(r.status ?? 1);
    });
}
