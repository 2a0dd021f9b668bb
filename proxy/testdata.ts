// A small ProxyConfig builder shared by the unit tests, the netns tests and the benchmark.
import {
  contentVersion,
  type Endpoint,
  PROXY_CONFIG_API_VERSION,
  type ProxyConfig,
  type Route,
  type Service,
} from '../api/index.ts';

export function endpoint(address: string, port: number, over: Partial<Endpoint> = {}): Endpoint {
  return {
    address,
    ports: { http: port },
    ready: true,
    serving: true,
    terminating: false,
    meshed: true,
    ...over,
  };
}

export function service(
  name: string,
  namespace: string,
  vip: string,
  port: number,
  endpoints: Endpoint[],
  appProtocol?: string,
): Service {
  return {
    id: `${namespace}/${name}`,
    name,
    namespace,
    clusterIPs: [vip],
    hostnames: [`${name}.${namespace}.svc.cluster.local`, `${name}.${namespace}.svc`, `${name}.${namespace}`],
    ports: [{ name: 'http', port, protocol: 'TCP', ...(appProtocol ? { appProtocol } : {}) }],
    endpoints,
  };
}

/** A route for shop/web (to itself unless `over` says otherwise). */
export function route(over: Partial<Route> = {}): Route {
  return {
    name: 'shop/web',
    service: 'shop/web',
    matches: [],
    backends: [{ service: 'shop/web', weight: 1 }],
    ...over,
  };
}

export function proxyConfig(
  namespace: string,
  services: Service[],
  routes: Route[] = [],
  mesh: Partial<ProxyConfig['mesh']> = {},
): ProxyConfig {
  const doc: Omit<ProxyConfig, 'version'> = {
    apiVersion: PROXY_CONFIG_API_VERSION,
    namespace,
    mesh: {
      trustDomain: 'cluster.local',
      clusterDomain: 'cluster.local',
      mtls: { mode: 'PERMISSIVE', ports: [] },
      outboundTrafficPolicy: 'ALLOW_ANY',
      defaultAuthorization: 'ALLOW',
      defaultTimeoutMs: 15_000,
      drainTimeoutMs: 5_000,
      logLevel: 'info',
      telemetry: { metrics: true, accessLogs: false },
      ...mesh,
    },
    trustBundle: [],
    services,
    routes,
    authorizationPolicies: [],
  };
  return { ...doc, version: contentVersion(doc) };
}
