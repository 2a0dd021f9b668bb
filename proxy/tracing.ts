// W3C trace context. Without a tracing endpoint the proxy passes `traceparent` through as it
// came (allowed for intermediaries that record nothing). With one (mesh.telemetry.tracing), it
// makes a span per request, a child of the caller's, sends the child's traceparent upstream, and
// exports spans over OTLP/HTTP in batches; the SDK is loaded only then.
import type { Span, Tracer } from '@opentelemetry/api';

export interface RequestSpan {
  traceparent: string;
  end(status: number): void;
}

export interface Tracing {
  /** Whether spans are being made (false: traceparent passes through untouched). */
  active(): boolean;
  start(
    direction: string,
    method: string,
    authority: string | undefined,
    path: string,
    traceparent: string | undefined,
  ): RequestSpan | undefined;
  shutdown(): Promise<void>;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

export function parseTraceparent(
  v: string | undefined,
): { traceId: string; spanId: string; sampled: boolean } | undefined {
  const m = v ? TRACEPARENT.exec(v.trim()) : null;
  if (!m || /^0+$/.test(m[1]!) || /^0+$/.test(m[2]!)) return undefined;
  return { traceId: m[1]!, spanId: m[2]!, sampled: (Number.parseInt(m[3]!, 16) & 1) === 1 };
}

/**
 * A CommonJS package's exports from a dynamic import(): Node hands them over as named exports
 * (and as `default`), the bundle the image ships (esbuild, dist/weft.js) only as `default`.
 */
function exportsOf<T extends object>(m: T, name: keyof T): T {
  return name in m ? m : ((m as { default?: T }).default ?? m);
}

export async function createOtlpTracing(
  endpoint: string,
  samplingPercent: number,
  serviceName: string,
): Promise<Tracing> {
  const api = await import('@opentelemetry/api');
  const { BasicTracerProvider, BatchSpanProcessor, TraceIdRatioBasedSampler, ParentBasedSampler } = exportsOf(
    await import('@opentelemetry/sdk-trace-base'),
    'BasicTracerProvider',
  );
  const { OTLPTraceExporter } = exportsOf(
    await import('@opentelemetry/exporter-trace-otlp-http'),
    'OTLPTraceExporter',
  );
  const { resourceFromAttributes } = exportsOf(
    await import('@opentelemetry/resources'),
    'resourceFromAttributes',
  );
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(samplingPercent / 100) }),
    spanProcessors: [
      new BatchSpanProcessor(new OTLPTraceExporter({ url: endpoint }), { maxQueueSize: 2048 }),
    ],
  });
  const tracer: Tracer = provider.getTracer('weft-proxy');
  return {
    active: () => true,
    start(direction, method, authority, path, traceparent) {
      const parent = parseTraceparent(traceparent);
      let ctx = api.ROOT_CONTEXT;
      if (parent) {
        ctx = api.trace.setSpanContext(ctx, {
          traceId: parent.traceId,
          spanId: parent.spanId,
          traceFlags: parent.sampled ? api.TraceFlags.SAMPLED : api.TraceFlags.NONE,
          isRemote: true,
        });
      }
      const span: Span = tracer.startSpan(
        `${direction} ${method}`,
        {
          kind: direction === 'inbound' ? api.SpanKind.SERVER : api.SpanKind.CLIENT,
          attributes: {
            'http.request.method': method,
            'server.address': authority ?? '',
            'url.path': path.split('?', 1)[0]!,
          },
        },
        ctx,
      );
      const sc = span.spanContext();
      return {
        traceparent: `00-${sc.traceId}-${sc.spanId}-${sc.traceFlags & 1 ? '01' : '00'}`,
        end(status) {
          span.setAttribute('http.response.status_code', status);
          if (status >= 500) span.setStatus({ code: api.SpanStatusCode.ERROR });
          span.end();
        },
      };
    },
    shutdown: () => provider.shutdown(),
  };
}
