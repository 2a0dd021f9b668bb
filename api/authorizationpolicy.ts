// AuthorizationPolicy: Istio's semantics, so users can bring what they know.
// Evaluation: any matching DENY denies; a workload with no ALLOW policy is allowed (unless the
// Mesh is default-deny); a matching ALLOW allows; otherwise deny. AUDIT never decides.
import { Type } from '@sinclair/typebox';
import { type KindDefinition, type Resource, type Static, StringMap, statusOf } from './common.ts';

/** HTTP methods as sent: upper case (compared case-sensitively, as Istio does), with the same wildcards. */
export const METHOD_PATTERN = '^(\\*|\\*?[A-Z_-]+|[A-Z_-]+\\*)$';
export const METHOD_MESSAGE =
  'methods are compared case-sensitively as clients send them: write upper-case methods such as GET, a prefix such as G*, a suffix such as *ETE, or * for any method';

const Strings = (description: string, maxLength = 512) =>
  Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength }), { maxItems: 64, description }));
const Methods = (description: string) =>
  Type.Optional(
    Type.Array(Type.String({ minLength: 1, maxLength: 32 }), {
      maxItems: 64,
      description: `${description} Upper case, as sent; "G*", "*ETE" and "*" (any) match by prefix, suffix and presence.`,
      'x-kubernetes-validations': [
        { rule: `self.all(m, m.matches(r'${METHOD_PATTERN}'))`, message: METHOD_MESSAGE },
      ],
    }),
  );
const Ports = (description: string) =>
  Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { maxItems: 64, description }));

const CIDR_RULE = 'self.all(c, isCIDR(c) || isIP(c))';
const IpBlocks = (description: string) =>
  Type.Optional(
    Type.Array(Type.String({ minLength: 2, maxLength: 64 }), {
      maxItems: 64,
      description,
      'x-kubernetes-validations': [
        { rule: CIDR_RULE, message: 'must hold IP addresses or CIDR blocks such as 10.0.0.0/8' },
      ],
    }),
  );

export const Source = Type.Object(
  {
    principals: Strings(
      'SPIFFE identities without the scheme, e.g. cluster.local/ns/shop/sa/web; * wildcards at either end.',
    ),
    notPrincipals: Strings('Identities that must not match.'),
    namespaces: Strings('Namespaces of the calling workload.', 63),
    notNamespaces: Strings('Namespaces that must not match.', 63),
    serviceAccounts: Strings(
      'ServiceAccounts of the caller as <namespace>/<name>, or <name> for the policy namespace.',
    ),
    notServiceAccounts: Strings('ServiceAccounts that must not match.'),
    ipBlocks: IpBlocks('Source IPs or CIDR blocks.'),
    notIpBlocks: IpBlocks('Source IPs or CIDR blocks that must not match.'),
  },
  {
    'x-kubernetes-validations': [
      {
        rule: '!(has(self.serviceAccounts) || has(self.notServiceAccounts)) || !(has(self.principals) || has(self.notPrincipals) || has(self.namespaces) || has(self.notNamespaces))',
        message:
          'source.serviceAccounts cannot be combined with principals or namespaces in one source: split them into two from[] entries',
        fieldPath: '.serviceAccounts',
      },
    ],
  },
);

export const Operation = Type.Object({
  ports: Ports('Destination ports.'),
  notPorts: Ports('Destination ports that must not match.'),
  methods: Methods('HTTP methods (HTTP only).'),
  notMethods: Methods('HTTP methods that must not match.'),
  paths: Strings('HTTP paths; * wildcards as prefix or suffix, or * alone (HTTP only).', 1024),
  notPaths: Strings('Paths that must not match.', 1024),
  hosts: Strings(
    'Host or :authority values, case-insensitive, a trailing dot ignored; a value without a port matches any port (HTTP only).',
    255,
  ),
  notHosts: Strings('Hosts that must not match.', 255),
});

export const WhenCondition = Type.Object(
  {
    key: Type.String({
      minLength: 1,
      maxLength: 256,
      pattern:
        '^(request\\.headers\\[[^\\]]+\\]|source\\.ip|source\\.namespace|source\\.principal|destination\\.port)$',
      description:
        'request.headers[<name>], source.ip, source.namespace, source.principal or destination.port.',
    }),
    values: Strings('Values any of which must match.', 1024),
    notValues: Strings('Values none of which may match.', 1024),
  },
  {
    'x-kubernetes-validations': [
      { rule: 'has(self.values) || has(self.notValues)', message: 'when[] needs values or notValues' },
    ],
  },
);

export const Rule = Type.Object({
  from: Type.Optional(
    Type.Array(Type.Object({ source: Source }), { maxItems: 16, description: 'Callers (any).' }),
  ),
  to: Type.Optional(
    Type.Array(Type.Object({ operation: Operation }), { maxItems: 16, description: 'Operations (any).' }),
  ),
  when: Type.Optional(Type.Array(WhenCondition, { maxItems: 16, description: 'Extra conditions (all).' })),
});
export type Rule = Static<typeof Rule>;

export const AUTHZ_ACTIONS = ['ALLOW', 'DENY', 'AUDIT'] as const;
export const AuthorizationPolicySpec = Type.Object(
  {
    selector: Type.Optional(
      Type.Object(
        { matchLabels: Type.Optional(StringMap('Pod labels of the workloads this policy applies to.')) },
        { description: 'Workloads in this namespace the policy applies to; absent: all of them.' },
      ),
    ),
    action: Type.Optional(
      Type.Union(
        AUTHZ_ACTIONS.map((a) => Type.Literal(a)),
        { default: 'ALLOW' },
      ),
    ),
    rules: Type.Optional(
      Type.Array(Rule, {
        maxItems: 64,
        description:
          'A request matches the policy if any rule matches. An ALLOW policy without rules allows nothing; a rule {} matches everything.',
      }),
    ),
  },
  {
    'x-kubernetes-validations': [
      {
        rule: '!has(self.rules) || self.action == "ALLOW" || self.rules.size() > 0',
        message:
          'rules: DENY and AUDIT policies need at least one rule (use rules: [{}] to match everything)',
        fieldPath: '.rules',
      },
    ],
  },
);
export type AuthorizationPolicySpec = Static<typeof AuthorizationPolicySpec>;
export const AuthorizationPolicyStatus = statusOf({});
export type AuthorizationPolicyStatus = Static<typeof AuthorizationPolicyStatus>;
export type AuthorizationPolicy = Resource<AuthorizationPolicySpec, AuthorizationPolicyStatus>;

export const AuthorizationPolicyKind: KindDefinition = {
  kind: 'AuthorizationPolicy',
  plural: 'authorizationpolicies',
  singular: 'authorizationpolicy',
  shortNames: ['ap', 'authz'],
  scope: 'Namespaced',
  spec: AuthorizationPolicySpec,
  status: AuthorizationPolicyStatus,
  description:
    'Allow, deny or audit requests to workloads by caller identity, namespace, IP, port, method, path and headers.',
  printerColumns: [
    { name: 'Action', type: 'string', jsonPath: '.spec.action' },
    { name: 'Ready', type: 'string', jsonPath: ".status.conditions[?(@.type=='Ready')].status" },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  ],
};
