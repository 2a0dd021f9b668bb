// The OpenTelemetry Collector of Weft's tracing tests: hack/otelcol/main.go (the OTLP receiver,
// the debug and OTLP/HTTP exporters) built once from the collector's pinned Go modules
// (hack/otelcol/go.mod) by hack/go-tool.sh, and its configuration. test/netns/tracing.test.ts
// runs it; docs/observability.md shows the same pipeline for a cluster.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type HostProcess, startHostProcess } from '../lib/hostprocess.ts';

const root = join(import.meta.dirname, '..', '..');

/** The collector binary (built once, ~3 min on 2 busy cores; cached in ~/.cache/weft/tools). */
export function otelcolBinary(): string {
  return execFileSync(
    'bash',
    [join(root, 'hack', 'go-tool.sh'), 'otelcol', 'weft.dev/otelcol', join(root, 'hack', 'otelcol')],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  ).trim();
}

/**
 * A collector receiving OTLP/HTTP on `listen` (host:port; the proxies post to
 * http://<listen>/v1/traces) and forwarding every span as OTLP/HTTP JSON to `forward` (a base
 * URL; the collector posts to <forward>/v1/traces), unbatched, with its own telemetry off.
 */
export function collectorConfig(o: { listen: string; forward: string }): string {
  return JSON.stringify({
    receivers: { otlp: { protocols: { http: { endpoint: o.listen } } } },
    exporters: {
      otlphttp: { endpoint: o.forward, encoding: 'json', compression: 'none' },
      debug: { verbosity: 'basic' },
    },
    service: {
      telemetry: { metrics: { level: 'none' } },
      pipelines: { traces: { receivers: ['otlp'], exporters: ['otlphttp', 'debug'] } },
    },
  });
}

/**
 * The collector as a host process (the e2e tests), receiving on `listen` and forwarding to
 * `forward` (collectorConfig), its config and log under `dir`; ready when it says so.
 */
export async function startCollector(o: {
  dir: string;
  listen: string;
  forward: string;
}): Promise<HostProcess> {
  mkdirSync(o.dir, { recursive: true });
  const config = join(o.dir, 'otelcol.yaml');
  writeFileSync(config, collectorConfig(o));
  const log = join(o.dir, 'otelcol.log');
  return startHostProcess({
    name: 'otelcol',
    cmd: otelcolBinary(),
    args: [`--config=${config}`],
    log,
    url: `http://${o.listen}`,
    ready: async () => readFileSync(log, 'utf8').includes('Everything is ready'),
  });
}
