// proxy-config rendering and the diff against the operator's config, with golden files.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { endpoint, proxyConfig, route, service } from '../proxy/testdata.ts';
import { assertGolden } from '../webhook/testdata/golden.ts';
import { diffConfigs, expiresIn, renderApplied, renderDiff } from './proxyconfig.ts';

const NOW = Date.parse('2026-11-30T12:00:00Z');
const web = service('web', 'shop', '10.96.0.10', 80, [
  endpoint('10.244.0.7', 8080, { identity: 'spiffe://cluster.local/ns/shop/sa/web', pod: 'web-1' }),
  endpoint('10.244.0.8', 8080, { ready: false, terminating: true }),
]);
const config = proxyConfig(
  'shop',
  [web, service('db', 'shop', '10.96.0.11', 5432, [], 'tcp')],
  [
    route(),
    route({
      name: 'shop/web-canary',
      port: 80,
      matches: [
        {
          method: 'GET',
          path: { type: 'PathPrefix', value: '/api' },
          headers: [{ name: 'x-canary', value: '1' }],
        },
      ],
      backends: [
        { service: 'shop/web', weight: 90 },
        { service: 'shop/web-v2', weight: 10, port: 8080 },
      ],
    }),
  ],
);
config.authorizationPolicies = [
  {
    name: 'shop/web-readers',
    namespace: 'shop',
    action: 'ALLOW',
    selector: { matchLabels: { app: 'web' } },
    rules: [{}],
  },
];

test('proxy-config renders the summary, routes, endpoints and policies as aligned tables', () => {
  const text = renderApplied(
    'shop/web-1',
    {
      status: {
        version: config.version,
        generation: 7,
        source: 'apiserver',
        stale: 0,
        appliedAt: '2026-11-30T11:59:00.000Z',
        lastError: undefined,
        reloads: 3,
        failures: 0,
      },
      certificate: {
        spiffeId: 'spiffe://cluster.local/ns/shop/sa/web',
        serialNumber: '01',
        issuer: 'O=Weft\nCN=Weft root',
        notBefore: '2026-11-30T00:00:00.000Z',
        notAfter: '2026-11-30T23:00:00.000Z',
      },
      config,
    },
    NOW,
  );
  assertGolden('weftctl-proxy-config.txt', text.replaceAll(config.version, '<version>'));
});

test('proxy-config without config or certificate says so', () => {
  const text = renderApplied(
    'shop/new-1',
    {
      status: {
        version: undefined,
        generation: undefined,
        source: undefined,
        stale: 0,
        appliedAt: undefined,
        lastError: { code: 'WEFT_CONFIG_MISSING', message: 'no config yet', at: 'now' },
        reloads: 0,
        failures: 1,
      },
      certificate: null,
      config: null,
    },
    NOW,
  );
  assert.match(text, /VERSION\s+none applied yet/);
  assert.match(text, /CERTIFICATE\s+none: the proxy talks plaintext to peers/);
  assert.match(text, /LAST ERROR\s+WEFT_CONFIG_MISSING: no config yet/);
});

test('diff: entries matched by name, not position; added, removed and changed fields named by path', () => {
  const newer = structuredClone(config);
  newer.routes = [newer.routes[1]!]; // shop/web removed, order changed
  newer.routes[0]!.backends[0]!.weight = 50;
  newer.services[0]!.endpoints.push(endpoint('10.244.0.9', 8080));
  newer.version = 'written';
  const lines = diffConfigs(config, newer);
  assert.deepEqual(
    lines.map((l) => `${l.op} ${l.path}`),
    [
      '- routes[shop/web]',
      '~ routes[shop/web-canary].backends[shop/web].weight',
      '+ services[shop/web].endpoints[10.244.0.9]',
      '~ version',
    ],
  );
  assertGolden(
    'weftctl-proxy-config-diff.txt',
    renderDiff(lines, 'applied', 'written').replaceAll(config.version, '<version>'),
  );
  assert.deepEqual(diffConfigs(config, structuredClone(config)), []);
  assert.match(renderDiff([], 'v', 'v'), /runs what the operator wrote \(version v\)/);
});

test('expiresIn: minutes under two hours, then hours, then days; EXPIRED after', () => {
  assert.equal(expiresIn('2026-11-30T12:30:00Z', NOW), '30m');
  assert.equal(expiresIn('2026-11-30T20:00:00Z', NOW), '8h');
  assert.equal(expiresIn('2026-12-05T12:00:00Z', NOW), '5d');
  assert.equal(expiresIn('2026-11-30T11:00:00Z', NOW), 'EXPIRED');
});
