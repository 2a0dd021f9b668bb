import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { AuthzPolicy, Rule } from '../../api/index.ts';
import { type AuthzRequest, compileAuthorizer, wildcardMatch } from './matcher.ts';

const NS = 'shop';
const WEB = 'cluster.local/ns/shop/sa/web';
const ADMIN = 'cluster.local/ns/ops/sa/admin';
const labels = { app: 'reviews', version: 'v1' };

const http = (
  over: Partial<AuthzRequest> & {
    method?: string;
    path?: string;
    host?: string;
    headers?: Record<string, string>;
  } = {},
): AuthzRequest => ({
  principal: 'principal' in over ? over.principal : WEB,
  sourceIp: over.sourceIp ?? '10.1.2.3',
  port: over.port ?? 8080,
  http: {
    method: over.method ?? 'GET',
    path: over.path ?? '/api/items',
    host: over.host ?? 'reviews.shop.svc.cluster.local:8080',
    headers: over.headers ?? {},
  },
});
const tcp = (over: Partial<AuthzRequest> = {}): AuthzRequest => ({
  principal: 'principal' in over ? over.principal : WEB,
  sourceIp: over.sourceIp ?? '10.1.2.3',
  port: over.port ?? 5432,
});
const pol = (
  name: string,
  action: AuthzPolicy['action'],
  rules: AuthzPolicy['rules'],
  selector?: Record<string, string>,
): AuthzPolicy => ({
  name: `${NS}/${name}`,
  namespace: NS,
  action,
  ...(selector ? { selector: { matchLabels: selector } } : {}),
  ...(rules ? { rules } : {}),
});

interface Case {
  name: string;
  policies: AuthzPolicy[];
  req: AuthzRequest;
  allowed: boolean;
  /** "policy#rule" that must have decided, or the reason code. */
  by?: string;
  defaultAction?: 'ALLOW' | 'DENY';
  audited?: string[];
}

const CASES: Case[] = [
  // Defaults.
  { name: 'no policies: allowed by default', policies: [], req: http(), allowed: true, by: 'default-allow' },
  {
    name: 'no policies, default-deny mesh: denied',
    policies: [],
    req: http(),
    allowed: false,
    by: 'default-deny',
    defaultAction: 'DENY',
  },
  {
    name: 'default-deny mesh, ALLOW matches: allowed',
    policies: [pol('a', 'ALLOW', [{}])],
    req: http(),
    allowed: true,
    by: 'shop/a#0',
    defaultAction: 'DENY',
  },
  {
    name: 'ALLOW without rules allows nothing',
    policies: [pol('a', 'ALLOW', undefined)],
    req: http(),
    allowed: false,
    by: 'no-allow-match',
  },
  {
    name: 'ALLOW with rule {} allows everything',
    policies: [pol('a', 'ALLOW', [{}])],
    req: tcp(),
    allowed: true,
    by: 'shop/a#0',
  },
  {
    name: 'DENY with rule {} denies everything',
    policies: [pol('d', 'DENY', [{}]), pol('a', 'ALLOW', [{}])],
    req: http(),
    allowed: false,
    by: 'shop/d#0',
  },
  // Principals.
  {
    name: 'principal exact match allows',
    policies: [pol('a', 'ALLOW', [{ from: [{ source: { principals: [WEB] } }] }])],
    req: http(),
    allowed: true,
    by: 'shop/a#0',
  },
  {
    name: 'other principal: no ALLOW matches',
    policies: [pol('a', 'ALLOW', [{ from: [{ source: { principals: [ADMIN] } }] }])],
    req: http(),
    allowed: false,
    by: 'no-allow-match',
  },
  {
    name: 'principal prefix wildcard',
    policies: [pol('a', 'ALLOW', [{ from: [{ source: { principals: ['cluster.local/ns/shop/*'] } }] }])],
    req: http(),
    allowed: true,
  },
  {
    name: 'principal suffix wildcard',
    policies: [pol('a', 'ALLOW', [{ from: [{ source: { principals: ['*/sa/web'] } }] }])],
    req: http(),
    allowed: true,
  },
  {
    name: 'principals * needs an identity: plaintext is not matched',
    policies: [pol('a', 'ALLOW', [{ from: [{ source: { principals: ['*'] } }] }])],
    req: http({ principal: undefined }),
    allowed: false,
  },
  {
    name: 'DENY notPrincipals * denies plaintext',
    policies: [pol('d', 'DENY', [{ from: [{ source: { notPrincipals: ['*'] } }] }])],
    req: http({ principal: undefined }),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'DENY notPrincipals * lets mTLS through',
    policies: [pol('d', 'DENY', [{ from: [{ source: { notPrincipals: ['*'] } }] }])],
    req: http(),
    allowed: true,
    by: 'default-allow',
  },
  // Namespaces and service accounts.
  {
    name: 'namespaces from the principal',
    policies: [pol('a', 'ALLOW', [{ from: [{ source: { namespaces: ['shop'] } }] }])],
    req: http(),
    allowed: true,
  },
  {
    name: 'notNamespaces excludes ops',
    policies: [pol('a', 'ALLOW', [{ from: [{ source: { notNamespaces: ['ops'] } }] }])],
    req: http({ principal: ADMIN }),
    allowed: false,
  },
  {
    name: 'serviceAccounts short name means the policy namespace',
    policies: [pol('a', 'ALLOW', [{ from: [{ source: { serviceAccounts: ['web'] } }] }])],
    req: http(),
    allowed: true,
  },
  {
    name: 'serviceAccounts short name does not match another namespace',
    policies: [pol('a', 'ALLOW', [{ from: [{ source: { serviceAccounts: ['admin'] } }] }])],
    req: http({ principal: ADMIN }),
    allowed: false,
  },
  {
    name: 'serviceAccounts ns/name',
    policies: [pol('a', 'ALLOW', [{ from: [{ source: { serviceAccounts: ['ops/admin'] } }] }])],
    req: http({ principal: ADMIN }),
    allowed: true,
  },
  {
    name: 'notServiceAccounts',
    policies: [pol('d', 'DENY', [{ from: [{ source: { notServiceAccounts: ['web'] } }] }])],
    req: http({ principal: ADMIN }),
    allowed: false,
    by: 'shop/d#0',
  },
  // IP blocks.
  {
    name: 'ipBlocks CIDR match',
    policies: [pol('a', 'ALLOW', [{ from: [{ source: { ipBlocks: ['10.1.0.0/16'] } }] }])],
    req: http(),
    allowed: true,
  },
  {
    name: 'ipBlocks single address',
    policies: [pol('a', 'ALLOW', [{ from: [{ source: { ipBlocks: ['10.9.9.9'] } }] }])],
    req: http(),
    allowed: false,
  },
  {
    name: 'notIpBlocks',
    policies: [pol('d', 'DENY', [{ from: [{ source: { notIpBlocks: ['10.0.0.0/8'] } }] }])],
    req: http({ sourceIp: '192.0.2.1' }),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'IPv4-mapped IPv6 source matches an IPv4 block',
    policies: [pol('a', 'ALLOW', [{ from: [{ source: { ipBlocks: ['10.1.0.0/16'] } }] }])],
    req: http({ sourceIp: '::ffff:10.1.2.3' }),
    allowed: true,
  },
  // Operations.
  {
    name: 'methods',
    policies: [pol('a', 'ALLOW', [{ to: [{ operation: { methods: ['GET', 'HEAD'] } }] }])],
    req: http({ method: 'POST' }),
    allowed: false,
  },
  {
    name: 'methods "*": a DENY on any method denies',
    policies: [pol('d', 'DENY', [{ to: [{ operation: { methods: ['*'] } }] }])],
    req: http({ method: 'PATCH' }),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'methods prefix "G*" denies GET',
    policies: [pol('d', 'DENY', [{ to: [{ operation: { methods: ['G*'] } }] }])],
    req: http({ method: 'GET' }),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'methods prefix "G*" leaves POST',
    policies: [pol('d', 'DENY', [{ to: [{ operation: { methods: ['G*'] } }] }])],
    req: http({ method: 'POST' }),
    allowed: true,
  },
  {
    name: 'methods suffix "*ETE" denies DELETE',
    policies: [pol('d', 'DENY', [{ to: [{ operation: { methods: ['*ETE'] } }] }])],
    req: http({ method: 'DELETE' }),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'methods compare case-sensitively (as Istio)',
    policies: [pol('a', 'ALLOW', [{ to: [{ operation: { methods: ['GET'] } }] }])],
    req: http({ method: 'get' }),
    allowed: false,
  },
  {
    name: 'notMethods with a wildcard',
    policies: [pol('d', 'DENY', [{ to: [{ operation: { notMethods: ['G*', 'HEAD'] } }] }])],
    req: http({ method: 'PUT' }),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'notMethods',
    policies: [pol('d', 'DENY', [{ to: [{ operation: { notMethods: ['GET'] } }] }])],
    req: http({ method: 'DELETE' }),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'paths exact',
    policies: [pol('a', 'ALLOW', [{ to: [{ operation: { paths: ['/api/items'] } }] }])],
    req: http(),
    allowed: true,
  },
  {
    name: 'paths prefix wildcard',
    policies: [pol('a', 'ALLOW', [{ to: [{ operation: { paths: ['/api/*'] } }] }])],
    req: http({ path: '/api/items/7' }),
    allowed: true,
  },
  {
    name: 'paths suffix wildcard',
    policies: [pol('a', 'ALLOW', [{ to: [{ operation: { paths: ['*.json'] } }] }])],
    req: http({ path: '/data/x.json' }),
    allowed: true,
  },
  {
    name: 'paths ignore the query string',
    policies: [pol('a', 'ALLOW', [{ to: [{ operation: { paths: ['/api/items'] } }] }])],
    req: http({ path: '/api/items?page=2' }),
    allowed: true,
  },
  {
    name: 'notPaths',
    policies: [pol('d', 'DENY', [{ to: [{ operation: { notPaths: ['/healthz'] } }] }])],
    req: http({ path: '/healthz' }),
    allowed: true,
  },
  {
    name: 'hosts ignore the port and case',
    policies: [pol('a', 'ALLOW', [{ to: [{ operation: { hosts: ['Reviews.shop.svc.cluster.local'] } }] }])],
    req: http(),
    allowed: true,
  },
  {
    name: 'hosts wildcard',
    policies: [pol('a', 'ALLOW', [{ to: [{ operation: { hosts: ['*.example.com'] } }] }])],
    req: http({ host: 'api.example.com' }),
    allowed: true,
  },
  {
    name: 'hosts: a trailing dot is no way around a DENY',
    policies: [pol('d', 'DENY', [{ to: [{ operation: { hosts: ['admin.shop'] } }] }])],
    req: http({ host: 'ADMIN.shop.:8080' }),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'hosts: a pattern with a port matches that port only',
    policies: [pol('a', 'ALLOW', [{ to: [{ operation: { hosts: ['web.shop:80'] } }] }])],
    req: http({ host: 'web.shop:8080' }),
    allowed: false,
  },
  {
    name: 'hosts: a pattern with a port does not match an authority without one',
    policies: [pol('a', 'ALLOW', [{ to: [{ operation: { hosts: ['web.shop:80'] } }] }])],
    req: http({ host: 'web.shop' }),
    allowed: false,
  },
  {
    name: 'hosts: a prefix pattern matches with the port',
    policies: [pol('d', 'DENY', [{ to: [{ operation: { hosts: ['web.*'] } }] }])],
    req: http({ host: 'web.shop:8080' }),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'hosts: a suffix pattern matches without the port',
    policies: [pol('d', 'DENY', [{ to: [{ operation: { hosts: ['*.shop'] } }] }])],
    req: http({ host: 'web.shop:8080' }),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'notHosts without a port excludes every port',
    policies: [pol('d', 'DENY', [{ to: [{ operation: { notHosts: ['web.shop'] } }] }])],
    req: http({ host: 'web.shop:9999' }),
    allowed: true,
  },
  {
    name: 'hosts "*" needs a non-empty authority',
    policies: [pol('a', 'ALLOW', [{ to: [{ operation: { hosts: ['*'] } }] }])],
    req: http({ host: '' }),
    allowed: false,
  },
  {
    name: 'paths "*" matches any path',
    policies: [pol('d', 'DENY', [{ to: [{ operation: { paths: ['*'] } }] }])],
    req: http({ path: '/' }),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'when request.headers "*": present, even empty (Istio present match)',
    policies: [pol('d', 'DENY', [{ when: [{ key: 'request.headers[x-debug]', values: ['*'] }] }])],
    req: http({ headers: { 'x-debug': '' } }),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'when request.headers "*": absent does not match',
    policies: [pol('d', 'DENY', [{ when: [{ key: 'request.headers[x-debug]', values: ['*'] }] }])],
    req: http(),
    allowed: true,
  },
  {
    name: 'when request.headers prefix',
    policies: [pol('d', 'DENY', [{ when: [{ key: 'request.headers[user-agent]', values: ['curl/*'] }] }])],
    req: http({ headers: { 'user-agent': 'curl/8.5' } }),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'namespaces "*" needs a namespace (plaintext caller has none)',
    policies: [pol('a', 'ALLOW', [{ from: [{ source: { namespaces: ['*'] } }] }])],
    req: http({ principal: undefined }),
    allowed: false,
  },
  {
    name: 'namespaces prefix',
    policies: [pol('d', 'DENY', [{ from: [{ source: { namespaces: ['sh*'] } }] }])],
    req: http(),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'when source.principal suffix',
    policies: [pol('d', 'DENY', [{ when: [{ key: 'source.principal', values: ['*/sa/web'] }] }])],
    req: http(),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'ports',
    policies: [pol('a', 'ALLOW', [{ to: [{ operation: { ports: [9090] } }] }])],
    req: http(),
    allowed: false,
  },
  {
    name: 'notPorts',
    policies: [pol('a', 'ALLOW', [{ to: [{ operation: { notPorts: [9090] } }] }])],
    req: http(),
    allowed: true,
  },
  // when.
  {
    name: 'when request header',
    policies: [pol('a', 'ALLOW', [{ when: [{ key: 'request.headers[x-tenant]', values: ['acme'] }] }])],
    req: http({ headers: { 'x-tenant': 'acme' } }),
    allowed: true,
  },
  {
    name: 'when request header missing',
    policies: [pol('a', 'ALLOW', [{ when: [{ key: 'request.headers[x-tenant]', values: ['acme'] }] }])],
    req: http(),
    allowed: false,
  },
  {
    name: 'when notValues on header',
    policies: [pol('d', 'DENY', [{ when: [{ key: 'request.headers[x-env]', notValues: ['prod'] }] }])],
    req: http({ headers: { 'x-env': 'dev' } }),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'when source.ip CIDR',
    policies: [pol('a', 'ALLOW', [{ when: [{ key: 'source.ip', values: ['10.1.2.0/24'] }] }])],
    req: tcp(),
    allowed: true,
  },
  {
    name: 'when source.namespace',
    policies: [
      pol('d', 'DENY', [
        {
          to: [{ operation: { paths: ['/admin*'] } }],
          when: [{ key: 'source.namespace', notValues: ['ops'] }],
        },
      ]),
    ],
    req: http({ path: '/admin/users' }),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'when source.namespace lets ops in',
    policies: [
      pol('d', 'DENY', [
        {
          to: [{ operation: { paths: ['/admin*'] } }],
          when: [{ key: 'source.namespace', notValues: ['ops'] }],
        },
      ]),
    ],
    req: http({ path: '/admin/users', principal: ADMIN }),
    allowed: true,
  },
  {
    name: 'when destination.port',
    policies: [pol('a', 'ALLOW', [{ when: [{ key: 'destination.port', values: ['8080'] }] }])],
    req: http(),
    allowed: true,
  },
  // Combination rules.
  {
    name: 'from AND to must both match',
    policies: [
      pol('a', 'ALLOW', [
        { from: [{ source: { principals: [WEB] } }], to: [{ operation: { methods: ['POST'] } }] },
      ]),
    ],
    req: http(),
    allowed: false,
  },
  {
    name: 'from[] entries are alternatives',
    policies: [
      pol('a', 'ALLOW', [
        { from: [{ source: { principals: [ADMIN] } }, { source: { namespaces: ['shop'] } }] },
      ]),
    ],
    req: http(),
    allowed: true,
  },
  {
    name: 'fields inside one source are all required',
    policies: [
      pol('a', 'ALLOW', [{ from: [{ source: { namespaces: ['shop'], ipBlocks: ['192.0.2.0/24'] } }] }]),
    ],
    req: http(),
    allowed: false,
  },
  {
    name: 'second rule decides and is named',
    policies: [
      pol('a', 'ALLOW', [
        { to: [{ operation: { methods: ['POST'] } }] },
        { to: [{ operation: { methods: ['GET'] } }] },
      ]),
    ],
    req: http(),
    allowed: true,
    by: 'shop/a#1',
  },
  {
    name: 'DENY wins over ALLOW',
    policies: [pol('a', 'ALLOW', [{}]), pol('d', 'DENY', [{ to: [{ operation: { paths: ['/api/*'] } }] }])],
    req: http(),
    allowed: false,
    by: 'shop/d#0',
  },
  // Selectors.
  {
    name: 'policy for other workloads does not apply',
    policies: [pol('a', 'ALLOW', [{ from: [{ source: { principals: [ADMIN] } }] }], { app: 'ratings' })],
    req: http(),
    allowed: true,
    by: 'default-allow',
  },
  {
    name: 'policy selecting this workload applies',
    policies: [pol('a', 'ALLOW', [{ from: [{ source: { principals: [ADMIN] } }] }], { app: 'reviews' })],
    req: http(),
    allowed: false,
  },
  // AUDIT.
  {
    name: 'AUDIT never decides: allowed by default',
    policies: [pol('au', 'AUDIT', [{}])],
    req: http(),
    allowed: true,
    by: 'default-allow',
    audited: ['shop/au#0'],
  },
  {
    name: 'AUDIT does not count as an ALLOW policy',
    policies: [pol('au', 'AUDIT', [{}])],
    req: http(),
    allowed: false,
    by: 'default-deny',
    defaultAction: 'DENY',
    audited: ['shop/au#0'],
  },
  {
    name: 'AUDIT recorded beside a DENY',
    policies: [pol('au', 'AUDIT', [{ to: [{ operation: { methods: ['GET'] } }] }]), pol('d', 'DENY', [{}])],
    req: http(),
    allowed: false,
    by: 'shop/d#0',
    audited: ['shop/au#0'],
  },
  // TCP versus HTTP fields.
  {
    name: 'TCP: ALLOW rule with HTTP fields never matches',
    policies: [pol('a', 'ALLOW', [{ to: [{ operation: { ports: [5432], methods: ['GET'] } }] }])],
    req: tcp(),
    allowed: false,
    by: 'no-allow-match',
  },
  {
    name: 'TCP: ALLOW rule with only TCP fields matches',
    policies: [pol('a', 'ALLOW', [{ to: [{ operation: { ports: [5432] } }] }])],
    req: tcp(),
    allowed: true,
  },
  {
    name: 'TCP: DENY rule ignores HTTP fields and still denies',
    policies: [pol('d', 'DENY', [{ to: [{ operation: { ports: [5432], paths: ['/x'] } }] }])],
    req: tcp(),
    allowed: false,
    by: 'shop/d#0',
  },
  {
    name: 'TCP: DENY rule still needs its TCP fields',
    policies: [pol('d', 'DENY', [{ to: [{ operation: { ports: [9999], paths: ['/x'] } }] }])],
    req: tcp(),
    allowed: true,
  },
  {
    name: 'TCP: AUDIT rule ignores HTTP fields and still audits (as DENY does, Istio)',
    policies: [pol('au', 'AUDIT', [{ to: [{ operation: { ports: [5432], methods: ['GET'] } }] }])],
    req: tcp(),
    allowed: true,
    audited: ['shop/au#0'],
  },
  {
    name: 'TCP: AUDIT rule still needs its TCP fields',
    policies: [pol('au', 'AUDIT', [{ to: [{ operation: { ports: [9999], paths: ['/x'] } }] }])],
    req: tcp(),
    allowed: true,
    audited: [],
  },
  {
    name: 'TCP: DENY on request header ignores the header',
    policies: [
      pol('d', 'DENY', [
        {
          from: [{ source: { namespaces: ['shop'] } }],
          when: [{ key: 'request.headers[x]', values: ['y'] }],
        },
      ]),
    ],
    req: tcp(),
    allowed: false,
    by: 'shop/d#0',
  },
];

function byOf(d: { reason: string; decidedBy?: { policy: string; rule: number } }): string {
  return d.decidedBy ? `${d.decidedBy.policy}#${d.decidedBy.rule}` : d.reason;
}

describe(`authorization matcher: ${CASES.length} cases`, () => {
  for (const c of CASES) {
    test(c.name, () => {
      const authz = compileAuthorizer(c.policies, labels, {
        defaultAction: c.defaultAction ?? 'ALLOW',
        namespace: NS,
      });
      const d = authz.decide(c.req);
      assert.equal(d.allowed, c.allowed, d.explanation);
      if (c.by) assert.equal(byOf(d), c.by);
      if (c.audited)
        assert.deepEqual(
          d.audited.map((a) => `${a.policy}#${a.rule}`),
          c.audited,
        );
      if (!d.allowed && d.decidedBy) assert.match(d.explanation, new RegExp(d.decidedBy.policy));
    });
  }
  test('the table has at least 40 cases', () => assert.ok(CASES.length >= 40));
});

// Properties over generated policies and requests.
const segment = fc.constantFrom('shop', 'ops', 'web', 'admin', 'api', 'x');
const path = fc.array(segment, { minLength: 1, maxLength: 3 }).map((s) => `/${s.join('/')}`);
const pattern = fc.oneof(
  path,
  path.map((p) => `${p}*`),
  path.map((p) => `*${p}`),
  fc.constant('*'),
);
const principal = fc.option(
  fc.tuple(segment, segment).map(([n, s]) => `cluster.local/ns/${n}/sa/${s}`),
  { nil: undefined },
);
const request = fc.record({
  principal,
  sourceIp: fc.constantFrom('10.1.2.3', '10.2.0.1', '192.0.2.7'),
  port: fc.constantFrom(80, 8080, 5432),
  http: fc.option(
    fc.record({
      method: fc.constantFrom('GET', 'POST', 'DELETE'),
      path,
      host: fc.constant('svc'),
      headers: fc.constant({}),
    }),
    { nil: undefined },
  ),
}) as fc.Arbitrary<AuthzRequest>;
const rule = fc.record(
  {
    from: fc.array(
      fc.record({
        source: fc.record(
          {
            principals: fc.array(
              pattern.map((p) => `cluster.local/ns${p}`),
              { minLength: 1, maxLength: 2 },
            ),
            namespaces: fc.array(segment, { minLength: 1, maxLength: 2 }),
            ipBlocks: fc.constant<string[]>(['10.1.0.0/16']),
          },
          { requiredKeys: [] },
        ),
      }),
      { maxLength: 2 },
    ),
    to: fc.array(
      fc.record({
        operation: fc.record(
          {
            ports: fc.constant([8080]),
            methods: fc.constant(['GET']),
            paths: fc.array(pattern, { minLength: 1, maxLength: 2 }),
            notPaths: fc.array(pattern, { minLength: 1, maxLength: 2 }),
          },
          { requiredKeys: [] },
        ),
      }),
      { maxLength: 2 },
    ),
  },
  { requiredKeys: [] },
) as fc.Arbitrary<Rule>;
const policy = fc.record({
  name: fc.constantFrom('p1', 'p2', 'p3', 'p4'),
  namespace: fc.constant(NS),
  action: fc.constantFrom('ALLOW', 'DENY', 'AUDIT') as fc.Arbitrary<AuthzPolicy['action']>,
  rules: fc.array(rule, { maxLength: 3 }),
}) as fc.Arbitrary<AuthzPolicy>;
const opts = { defaultAction: 'ALLOW' as const, namespace: NS };

describe('authorization matcher properties', () => {
  test('AUDIT policies never change the decision', () => {
    fc.assert(
      fc.property(fc.array(policy, { maxLength: 4 }), request, (policies, req) => {
        const withAudit = compileAuthorizer(policies, labels, opts).decide(req);
        const without = compileAuthorizer(
          policies.filter((p) => p.action !== 'AUDIT'),
          labels,
          opts,
        ).decide(req);
        assert.equal(withAudit.allowed, without.allowed);
      }),
      { numRuns: 500 },
    );
  });

  test('the decision does not depend on the order of policies', () => {
    fc.assert(
      fc.property(fc.array(policy, { maxLength: 4 }), request, (policies, req) => {
        const a = compileAuthorizer(policies, labels, opts).decide(req).allowed;
        const b = compileAuthorizer([...policies].reverse(), labels, opts).decide(req).allowed;
        assert.equal(a, b);
      }),
      { numRuns: 500 },
    );
  });

  test('adding a DENY policy never turns a denial into an allow', () => {
    fc.assert(
      fc.property(fc.array(policy, { maxLength: 3 }), rule, request, (policies, r, req) => {
        const before = compileAuthorizer(policies, labels, opts).decide(req);
        const after = compileAuthorizer(
          [...policies, { name: 'extra', namespace: NS, action: 'DENY', rules: [r] }],
          labels,
          opts,
        ).decide(req);
        if (!before.allowed) assert.equal(after.allowed, false);
      }),
      { numRuns: 500 },
    );
  });

  test('a denial by policy always names a policy that exists and is DENY or the ALLOW set is non-empty', () => {
    fc.assert(
      fc.property(fc.array(policy, { maxLength: 4 }), request, (policies, req) => {
        const d = compileAuthorizer(policies, labels, opts).decide(req);
        if (d.decidedBy) assert.ok(policies.some((p) => p.name === d.decidedBy!.policy));
        if (d.reason === 'no-allow-match') assert.ok(policies.some((p) => p.action === 'ALLOW'));
      }),
      { numRuns: 500 },
    );
  });

  test('paths and notPaths with the same pattern split HTTP requests exactly in two', () => {
    fc.assert(
      fc.property(pattern, path, (p, reqPath) => {
        const req = http({ path: reqPath });
        const a = compileAuthorizer(
          [pol('a', 'ALLOW', [{ to: [{ operation: { paths: [p] } }] }])],
          labels,
          opts,
        ).decide(req);
        const b = compileAuthorizer(
          [pol('b', 'ALLOW', [{ to: [{ operation: { notPaths: [p] } }] }])],
          labels,
          opts,
        ).decide(req);
        assert.notEqual(a.allowed, b.allowed);
        assert.equal(a.allowed, wildcardMatch(p, reqPath));
      }),
      { numRuns: 1000 },
    );
  });
});
