// The webhook's Kubernetes objects, built in one place: config/webhook/*.yaml is generated
// from here (`node webhook/manifests.ts --write`), and the integration tests register the
// same configurations with a loopback URL instead of the Service.
import type {
  AdmissionregistrationV1WebhookClientConfig,
  V1MutatingWebhook,
  V1MutatingWebhookConfiguration,
  V1ValidatingWebhookConfiguration,
} from '@kubernetes/client-node';
import { Certificate } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate';
import { Issuer } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Issuer';
import { GROUP, VERSION } from '../api/index.ts';
import { CONTROL_PLANE_LABEL, INJECT_LABEL, PROTECTED_NAMESPACES } from './constants.ts';
import { DEFAULT_TLS_SECRET, WEBHOOK_PATHS } from './server.ts';

export const WEBHOOK_NAMES = {
  mutatingConfiguration: 'weft-injector',
  validatingConfiguration: 'weft-validator',
  service: 'weft-webhook',
  certificate: 'weft-webhook',
  issuer: 'weft-webhook-selfsigned',
  /** Pods of namespaces labelled for injection: failurePolicy Fail. */
  injectNamespaces: 'namespaces.inject.weft.dev',
  /** Pods elsewhere that may opt in by annotation: failurePolicy Ignore. */
  injectPods: 'pods.inject.weft.dev',
  validate: 'validate.weft.dev',
} as const;

export const WEBHOOK_TIMEOUT_SECONDS = 5;
export const CERT_MANAGER_INJECT_ANNOTATION = 'cert-manager.io/inject-ca-from';

export interface ConfigurationOptions {
  /** Weft's namespace: excluded from injection, hosts the Service. */
  namespace: string;
  /** How the apiserver reaches a path: the Service (default) or a URL (tests, out-of-cluster). */
  clientConfig?: (path: string) => AdmissionregistrationV1WebhookClientConfig;
  /** caBundle (base64 PEM); omitted when the webhook or cert-manager's cainjector writes it. */
  caBundle?: string;
  /** cert-manager mode: annotate for the cainjector. */
  certManager?: boolean;
}

export function serviceClientConfig(namespace: string) {
  return (path: string): AdmissionregistrationV1WebhookClientConfig => ({
    service: { name: WEBHOOK_NAMES.service, namespace, path, port: 443 },
  });
}

export function webhookConfigurations(opts: ConfigurationOptions): {
  mutating: V1MutatingWebhookConfiguration;
  validating: V1ValidatingWebhookConfiguration;
} {
  const client = opts.clientConfig ?? serviceClientConfig(opts.namespace);
  const withCa = (c: AdmissionregistrationV1WebhookClientConfig) =>
    opts.caBundle ? { ...c, caBundle: opts.caBundle } : c;
  const annotations = opts.certManager
    ? { [CERT_MANAGER_INJECT_ANNOTATION]: `${opts.namespace}/${WEBHOOK_NAMES.certificate}` }
    : undefined;
  const excluded = {
    key: 'kubernetes.io/metadata.name',
    operator: 'NotIn',
    values: [...PROTECTED_NAMESPACES, opts.namespace],
  };
  const notControlPlane = { matchExpressions: [{ key: CONTROL_PLANE_LABEL, operator: 'DoesNotExist' }] };
  const inject = (name: string, labelled: boolean): V1MutatingWebhook => ({
    name,
    admissionReviewVersions: ['v1'],
    clientConfig: withCa(client(WEBHOOK_PATHS.inject)),
    rules: [
      {
        apiGroups: [''],
        apiVersions: ['v1'],
        operations: ['CREATE'],
        resources: ['pods'],
        scope: 'Namespaced',
      },
    ],
    namespaceSelector: {
      matchExpressions: [
        excluded,
        { key: INJECT_LABEL, operator: labelled ? 'In' : 'NotIn', values: ['enabled'] },
      ],
    },
    objectSelector: notControlPlane,
    failurePolicy: labelled ? 'Fail' : 'Ignore',
    matchPolicy: 'Equivalent',
    sideEffects: 'None',
    timeoutSeconds: WEBHOOK_TIMEOUT_SECONDS,
    reinvocationPolicy: 'IfNeeded',
  });
  return {
    mutating: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: { name: WEBHOOK_NAMES.mutatingConfiguration, ...(annotations ? { annotations } : {}) },
      webhooks: [inject(WEBHOOK_NAMES.injectNamespaces, true), inject(WEBHOOK_NAMES.injectPods, false)],
    },
    validating: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: { name: WEBHOOK_NAMES.validatingConfiguration, ...(annotations ? { annotations } : {}) },
      webhooks: [
        {
          name: WEBHOOK_NAMES.validate,
          admissionReviewVersions: ['v1'],
          clientConfig: withCa(client(WEBHOOK_PATHS.validate)),
          rules: [
            {
              apiGroups: [GROUP],
              apiVersions: [VERSION],
              operations: ['CREATE', 'UPDATE'],
              resources: ['meshes', 'trafficsplits', 'authorizationpolicies'],
              scope: '*',
            },
          ],
          failurePolicy: 'Fail',
          matchPolicy: 'Equivalent',
          sideEffects: 'None',
          timeoutSeconds: WEBHOOK_TIMEOUT_SECONDS,
        },
      ],
    },
  };
}

/** cert-manager mode: a self-signed Issuer and the serving Certificate the webhook reads. */
export function certManagerResources(namespace: string): [Issuer, Certificate] {
  return [
    new Issuer({
      metadata: { name: WEBHOOK_NAMES.issuer, namespace },
      spec: { selfSigned: {} },
    }),
    new Certificate({
      metadata: { name: WEBHOOK_NAMES.certificate, namespace },
      spec: {
        secretName: DEFAULT_TLS_SECRET,
        dnsNames: [
          `${WEBHOOK_NAMES.service}.${namespace}.svc`,
          `${WEBHOOK_NAMES.service}.${namespace}.svc.cluster.local`,
        ],
        issuerRef: { name: WEBHOOK_NAMES.issuer, kind: 'Issuer', group: 'cert-manager.io' },
        privateKey: { algorithm: 'ECDSA', size: 256, rotationPolicy: 'Always' },
        duration: '8760h0m0s',
        renewBefore: '2920h0m0s',
      },
    }),
  ];
}
