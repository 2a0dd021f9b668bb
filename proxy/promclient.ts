// prom-client's registry and metric classes, loaded without its index: index.js also loads the
// Pushgateway (http, https and so tls), the default process metrics (v8, perf_hooks) and the
// cluster aggregator (cluster, child_process), which the sidecar does not use and which cost it
// several MB (docs/proxy.md, Memory). The classes are the same; their types come from the index.
import type * as Prom from 'prom-client';
import CounterCjs from 'prom-client/lib/counter.js';
import GaugeCjs from 'prom-client/lib/gauge.js';
import HistogramCjs from 'prom-client/lib/histogram.js';
import RegistryCjs from 'prom-client/lib/registry.js';

export const Counter = CounterCjs as typeof Prom.Counter;
export const Gauge = GaugeCjs as typeof Prom.Gauge;
export const Histogram = HistogramCjs as typeof Prom.Histogram;
export const Registry = RegistryCjs as typeof Prom.Registry;
export type Registry = Prom.Registry;
