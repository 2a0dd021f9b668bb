// prom-client's own files, imported one by one by proxy/promclient.ts (CommonJS, no types of
// their own: each exports its class as module.exports).
declare module 'prom-client/lib/counter.js' {
  const value: unknown;
  export default value;
}
declare module 'prom-client/lib/gauge.js' {
  const value: unknown;
  export default value;
}
declare module 'prom-client/lib/histogram.js' {
  const value: unknown;
  export default value;
}
declare module 'prom-client/lib/registry.js' {
  const value: unknown;
  export default value;
}
