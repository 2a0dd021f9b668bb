// Whether the Gateway API CRDs are installed, and the informers for them when they are. The
// operator checks once at start (API discovery, no extra RBAC): without the CRDs it watches no
// routes, says so once in its log and in the Mesh's GatewayAPI condition, and works as before.
// Installing them later needs an operator restart (docs/gateway-api.md).

import { type KubeClient, type KubeObject, RESOURCES } from '../kube/client.ts';
import type { ConditionInput } from '../kube/conditions.ts';
import { isNotFound } from '../kube/errors.ts';
import type { Logger } from '../kube/log.ts';
import type { InformerFactory, Obj } from './cache.ts';
import {
  GATEWAY_GROUP,
  GATEWAY_RESOURCES,
  type GatewayClassObj,
  type GatewayObj,
  type GRPCRouteObj,
  type HTTPRouteObj,
  type ReferenceGrantObj,
} from './compile/gatewaytypes.ts';
import type { TlsSecret } from './compile/ingress.ts';

/** The Mesh condition that says whether routes are watched. */
export const GATEWAY_API_CONDITION = 'GatewayAPI';

export interface GatewayApiSupport {
  httpRoutes: boolean;
  grpcRoutes: boolean;
  referenceGrants: boolean;
  /** Gateway and GatewayClass: Weft's own gateway (docs/ingress.md). */
  gateways: boolean;
}

async function served(client: KubeClient, version: string): Promise<Set<string>> {
  try {
    const list = await client.request<{ resources?: { name: string }[] }>(
      'GET',
      `/apis/${GATEWAY_GROUP}/${version}`,
    );
    return new Set((list.resources ?? []).map((r) => r.name));
  } catch (err) {
    if (isNotFound(err)) return new Set();
    throw err;
  }
}

export async function discoverGatewayApi(client: KubeClient, log: Logger): Promise<GatewayApiSupport> {
  const v1 = await served(client, GATEWAY_RESOURCES.httpRoutes.version);
  const grants = await served(client, GATEWAY_RESOURCES.referenceGrants.version);
  const s = {
    httpRoutes: v1.has(GATEWAY_RESOURCES.httpRoutes.plural),
    grpcRoutes: v1.has(GATEWAY_RESOURCES.grpcRoutes.plural),
    referenceGrants: grants.has(GATEWAY_RESOURCES.referenceGrants.plural),
    gateways:
      v1.has(GATEWAY_RESOURCES.gateways.plural) &&
      v1.has(GATEWAY_RESOURCES.gatewayClasses.plural) &&
      v1.has(GATEWAY_RESOURCES.httpRoutes.plural),
  };
  if (!s.httpRoutes && !s.grpcRoutes)
    log.warn(
      `Gateway API CRDs (${GATEWAY_GROUP}/v1 HTTPRoute, GRPCRoute) are not installed: HTTPRoutes and GRPCRoutes are not watched. Install them (docs/gateway-api.md) and restart the operator to use them`,
    );
  else log.info(s, 'Gateway API CRDs found: watching routes attached to Services');
  return s;
}

export type GatewayCache = ReturnType<typeof gatewayCache>;

/** Informers for what is installed (undefined for the rest). */
export function gatewayCache(make: InformerFactory, s: GatewayApiSupport) {
  return {
    httpRoutes: s.httpRoutes ? make<Obj<HTTPRouteObj>>(GATEWAY_RESOURCES.httpRoutes) : undefined,
    grpcRoutes: s.grpcRoutes ? make<Obj<GRPCRouteObj>>(GATEWAY_RESOURCES.grpcRoutes) : undefined,
    referenceGrants: s.referenceGrants
      ? make<Obj<ReferenceGrantObj>>(GATEWAY_RESOURCES.referenceGrants)
      : undefined,
    gateways: s.gateways ? make<Obj<GatewayObj>>(GATEWAY_RESOURCES.gateways) : undefined,
    gatewayClasses: s.gateways ? make<Obj<GatewayClassObj>>(GATEWAY_RESOURCES.gatewayClasses) : undefined,
    /**
     * HTTPS listeners' certificates: Secrets of type kubernetes.io/tls that are not Weft's own
     * (its identity Secrets), slimmed to their certificate and key (docs/ingress.md).
     */
    tlsSecrets: s.gateways
      ? make<Obj<KubeObject & TlsSecret>>(RESOURCES.secrets, {
          fieldSelector: 'type=kubernetes.io/tls',
          labelSelector: 'app.kubernetes.io/managed-by!=weft',
          transform: (o) => {
            const x = o as KubeObject & TlsSecret;
            return {
              metadata: {
                name: x.metadata.name,
                namespace: x.metadata.namespace,
                resourceVersion: x.metadata.resourceVersion,
              },
              type: x.type,
              data: { 'tls.crt': x.data?.['tls.crt'] ?? '', 'tls.key': x.data?.['tls.key'] ?? '' },
            } as Obj<KubeObject & TlsSecret>;
          },
        })
      : undefined,
  };
}

/** The Mesh's GatewayAPI condition. */
export function gatewayApiCondition(s: GatewayApiSupport): ConditionInput {
  const kinds = [
    s.httpRoutes && 'HTTPRoute',
    s.grpcRoutes && 'GRPCRoute',
    s.referenceGrants && 'ReferenceGrant',
    s.gateways && 'Gateway, GatewayClass',
  ].filter(Boolean);
  return kinds.length > 0
    ? {
        type: GATEWAY_API_CONDITION,
        status: 'True',
        reason: 'Installed',
        message: `Watching ${kinds.join(', ')}`,
      }
    : {
        type: GATEWAY_API_CONDITION,
        status: 'False',
        reason: 'NotInstalled',
        message: `The Gateway API CRDs are not installed: HTTPRoutes and GRPCRoutes are ignored (install them and restart the operator)`,
      };
}
