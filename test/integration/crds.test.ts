// The generated CRDs against a real kube-apiserver: they install and become Established,
// the samples apply, and bad input is refused by the apiserver itself with a message that
// names the field.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WEFT_IMAGE } from '../../api/mesh.ts';
import {
  installCrds,
  readYamlDocs,
  refusal,
  repoRoot,
  startTestCluster,
  type TestCluster,
} from '../support/cluster.ts';

let cluster: TestCluster;

before(async () => {
  cluster = await startTestCluster();
});
after(async () => {
  await cluster?.stop();
});

const split = (spec: Record<string, unknown>, name = 'bad') => ({
  apiVersion: 'weft.dev/v1alpha1',
  kind: 'TrafficSplit',
  metadata: { name, namespace: 'default' },
  spec: { service: 'reviews', backends: [{ service: 'reviews-v1', weight: 1 }], ...spec },
});
const policy = (spec: Record<string, unknown>) => ({
  apiVersion: 'weft.dev/v1alpha1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'bad', namespace: 'default' },
  spec,
});
const mesh = (spec: Record<string, unknown>, name = 'default') => ({
  apiVersion: 'weft.dev/v1alpha1',
  kind: 'Mesh',
  metadata: { name },
  spec,
});

const canaryBackends = [
  { service: 'reviews-v1', weight: 100 },
  { service: 'reviews-v2', weight: 0 },
];

/** One invalid resource per rule, and what the apiserver's message must contain. */
const INVALID: { rule: string; obj: Record<string, unknown>; expect: RegExp[] }[] = [
  {
    rule: 'backends non-empty',
    obj: split({ backends: [] }),
    expect: [/spec\.backends/, /at least 1 items/],
  },
  {
    rule: 'weights not all zero',
    obj: split({
      backends: [
        { service: 'a', weight: 0 },
        { service: 'b', weight: 0 },
      ],
    }),
    expect: [/spec\.backends/, /at least one weight must be greater than 0/],
  },
  {
    rule: 'weight bounds',
    obj: split({ backends: [{ service: 'a', weight: -1 }] }),
    expect: [/spec\.backends\[0\]\.weight/],
  },
  {
    rule: 'backend unique',
    obj: split({
      backends: [
        { service: 'a', weight: 1 },
        { service: 'a', weight: 2 },
      ],
    }),
    expect: [/spec\.backends\[1\]/, /[Dd]uplicate/],
  },
  { rule: 'service name is a DNS label', obj: split({ service: 'Not_A_Name' }), expect: [/spec\.service/] },
  { rule: 'duration format', obj: split({ timeout: 'five seconds' }), expect: [/spec\.timeout/] },
  {
    // 600h overflowed the proxy's timer: every request got 504 within 1 ms.
    rule: 'timeout bound',
    obj: split({ timeout: '600h' }),
    expect: [/spec\.timeout/, /timeout must be at most 24h/],
  },
  {
    rule: 'perTryTimeout bound',
    obj: split({ retries: { attempts: 1, perTryTimeout: '25h' } }),
    expect: [/spec\.retries\.perTryTimeout/, /retries\.perTryTimeout must be at most 24h/],
  },
  {
    rule: 'fault delay bound',
    obj: split({ faultInjection: { delay: { fixedDelay: '61m', percentage: 1 } } }),
    expect: [/spec\.faultInjection\.delay\.fixedDelay/, /fixedDelay must be at most 1h/],
  },
  {
    rule: 'ejection time bound',
    obj: split({ circuitBreaker: { baseEjectionTime: '2h' } }),
    expect: [/spec\.circuitBreaker\.baseEjectionTime/, /baseEjectionTime must be at most 1h/],
  },
  {
    rule: 'a duration too long for CEL is refused too',
    obj: split({ timeout: '99999999999999999h' }),
    expect: [/spec\.timeout/],
  },
  {
    rule: 'perTryTimeout within timeout',
    obj: split({ timeout: '1s', retries: { attempts: 2, perTryTimeout: '2s' } }),
    expect: [/spec\.retries\.perTryTimeout/, /must not exceed timeout/],
  },
  {
    rule: 'retry attempts bound',
    obj: split({ retries: { attempts: 11 } }),
    expect: [/spec\.retries\.attempts/],
  },
  {
    rule: 'retryOn enum',
    obj: split({ retries: { attempts: 1, retryOn: ['sometimes'] } }),
    expect: [/spec\.retries\.retryOn\[0\]/, /Unsupported value/],
  },
  {
    rule: 'fault needs delay or abort',
    obj: split({ faultInjection: {} }),
    expect: [/spec\.faultInjection/, /needs delay, abort or both/],
  },
  {
    rule: 'abort status range',
    obj: split({ faultInjection: { abort: { httpStatus: 99, percentage: 1 } } }),
    expect: [/spec\.faultInjection\.abort\.httpStatus/],
  },
  {
    rule: 'percentage bound',
    obj: split({ faultInjection: { delay: { fixedDelay: '1s', percentage: 101 } } }),
    expect: [/spec\.faultInjection\.delay\.percentage/],
  },
  {
    rule: 'consistent hash needs a header',
    obj: split({ loadBalancer: { type: 'CONSISTENT_HASH' } }),
    expect: [/spec\.loadBalancer\.hashHeader/, /required with type CONSISTENT_HASH/],
  },
  {
    rule: 'lb type enum',
    obj: split({ loadBalancer: { type: 'RANDOM' } }),
    expect: [/spec\.loadBalancer\.type/, /Unsupported value/],
  },
  {
    rule: 'mirror is not a backend',
    obj: split({ mirror: { service: 'reviews-v1', percentage: 10 } }),
    expect: [/spec\.mirror\.service/, /must not be one of the backends/],
  },
  {
    rule: 'a path regular expression is bounded in length',
    obj: split({ matches: [{ path: { type: 'RegularExpression', value: `/${'a'.repeat(1024)}` } }] }),
    expect: [/spec\.matches\[0\]\.path\.value/, /1024/],
  },
  {
    rule: 'a header regular expression is bounded in length',
    obj: split({
      matches: [{ headers: [{ name: 'x', type: 'RegularExpression', value: 'a'.repeat(1025) }] }],
    }),
    expect: [/spec\.matches\[0\]\.headers\[0\]\.value/, /a RegularExpression is at most 1024 characters/],
  },
  {
    rule: 'match path starts with /',
    obj: split({ matches: [{ path: { type: 'PathPrefix', value: 'api' } }] }),
    expect: [/spec\.matches\[0\]\.path\.value/],
  },
  {
    rule: 'serviceAccounts not combined with principals',
    obj: policy({
      rules: [{ from: [{ source: { serviceAccounts: ['web'], principals: ['cluster.local/ns/a/sa/b'] } }] }],
    }),
    expect: [
      /spec\.rules\[0\]\.from\[0\]\.source\.serviceAccounts/,
      /cannot be combined with principals or namespaces/,
    ],
  },
  {
    rule: 'serviceAccounts not combined with namespaces',
    obj: policy({ rules: [{ from: [{ source: { serviceAccounts: ['web'], namespaces: ['shop'] } }] }] }),
    expect: [/source\.serviceAccounts/, /cannot be combined/],
  },
  { rule: 'action enum', obj: policy({ action: 'MAYBE' }), expect: [/spec\.action/, /Unsupported value/] },
  {
    rule: 'ipBlocks are CIDRs',
    obj: policy({ rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/33'] } }] }] }),
    expect: [/spec\.rules\[0\]\.from\[0\]\.source\.ipBlocks/, /CIDR/],
  },
  {
    rule: 'port range',
    obj: policy({ rules: [{ to: [{ operation: { ports: [70000] } }] }] }),
    expect: [/spec\.rules\[0\]\.to\[0\]\.operation\.ports\[0\]/],
  },
  {
    rule: 'when needs values',
    obj: policy({ rules: [{ when: [{ key: 'source.ip' }] }] }),
    expect: [/spec\.rules\[0\]\.when\[0\]/, /needs values or notValues/],
  },
  {
    rule: 'when key is known',
    obj: policy({ rules: [{ when: [{ key: 'request.body', values: ['x'] }] }] }),
    expect: [/spec\.rules\[0\]\.when\[0\]\.key/],
  },
  {
    rule: 'methods are upper case (compared as sent)',
    obj: policy({ action: 'DENY', rules: [{ to: [{ operation: { methods: ['get'] } }] }] }),
    expect: [/spec\.rules\[0\]\.to\[0\]\.operation\.methods/, /upper-case methods such as GET/],
  },
  {
    rule: 'notMethods are upper case, wildcards too',
    obj: policy({ action: 'DENY', rules: [{ to: [{ operation: { notMethods: ['g*'] } }] }] }),
    expect: [/spec\.rules\[0\]\.to\[0\]\.operation\.notMethods/, /upper-case methods/],
  },
  {
    rule: 'path normalization enum',
    obj: mesh({ pathNormalization: { normalization: 'STRICT' } }),
    expect: [/spec\.pathNormalization\.normalization/, /Unsupported value/],
  },
  {
    rule: 'DENY needs rules',
    obj: policy({ action: 'DENY', rules: [] }),
    expect: [/spec\.rules/, /need at least one rule/],
  },
  {
    rule: 'rotation before lifetime',
    obj: mesh({ ca: { workloadCertLifetime: '1h', renewBefore: '2h' } }),
    expect: [/spec\.ca\.renewBefore/, /must be shorter than ca\.workloadCertLifetime/],
  },
  {
    rule: 'mesh default timeout bound',
    obj: mesh({ defaults: { timeout: '1000h', retries: { attempts: 1, perTryTimeout: '1000h' } } }),
    expect: [
      /spec\.defaults\.timeout/,
      /defaults\.timeout must be at most 24h/,
      /spec\.defaults\.retries\.perTryTimeout/,
    ],
  },
  {
    rule: 'drain timeout bound',
    obj: mesh({ proxy: { drainTimeout: '2h' } }),
    expect: [/spec\.proxy\.drainTimeout/, /proxy\.drainTimeout must be at most 1h/],
  },
  {
    rule: 'certificate lifetime bounds',
    obj: mesh({ ca: { workloadCertLifetime: '9000h', builtIn: { rootLifetime: '900000h' } } }),
    expect: [
      /spec\.ca\.workloadCertLifetime/,
      /ca\.workloadCertLifetime must be at most 8760h/,
      /ca\.builtIn\.rootLifetime must be at most 876000h/,
    ],
  },
  {
    rule: 'one CA kind',
    obj: mesh({ ca: { builtIn: {}, certManager: { issuerRef: { name: 'x' } } } }),
    expect: [/spec\.ca\.certManager/, /exclusive/],
  },
  {
    rule: 'mtls mode enum',
    obj: mesh({ mtls: { mode: 'ON' } }),
    expect: [/spec\.mtls\.mode/, /Unsupported value/],
  },
  {
    rule: 'progression: the canary is one of the backends',
    obj: split({ progression: { canary: 'reviews-v9', stepWeights: [10, 50] } }),
    expect: [/spec\.progression\.canary/, /must be one of backends\[\]\.service/],
  },
  {
    rule: 'progression: a stable backend has a weight',
    obj: split({
      backends: [
        { service: 'reviews-v1', weight: 0 },
        { service: 'reviews-v2', weight: 1 },
      ],
      progression: { canary: 'reviews-v2', stepWeights: [10] },
    }),
    expect: [/spec\.backends/, /other than progression\.canary \(the stable version\)/],
  },
  {
    rule: 'progression: steps as weights or as a range, not both',
    obj: split({
      backends: canaryBackends,
      progression: {
        canary: 'reviews-v2',
        stepWeights: [10],
        stepWeightRange: { start: 10, increment: 10, max: 50 },
      },
    }),
    expect: [/spec\.progression/, /exactly one of stepWeights or stepWeightRange/],
  },
  {
    rule: 'progression: steps are required',
    obj: split({ backends: canaryBackends, progression: { canary: 'reviews-v2' } }),
    expect: [/spec\.progression/, /exactly one of stepWeights or stepWeightRange/],
  },
  {
    rule: 'progression: step weights increase',
    obj: split({ backends: canaryBackends, progression: { canary: 'reviews-v2', stepWeights: [50, 10] } }),
    expect: [/spec\.progression\.stepWeights/, /must increase/],
  },
  {
    rule: 'progression: step weights are distinct',
    obj: split({ backends: canaryBackends, progression: { canary: 'reviews-v2', stepWeights: [10, 10] } }),
    expect: [/spec\.progression\.stepWeights/, /[Dd]uplicate/],
  },
  {
    rule: 'progression: a range starts below its max',
    obj: split({
      backends: canaryBackends,
      progression: { canary: 'reviews-v2', stepWeightRange: { start: 60, increment: 10, max: 50 } },
    }),
    expect: [/spec\.progression\.stepWeightRange\.start/, /must not exceed max/],
  },
  {
    rule: 'progression: step weights are percentages',
    obj: split({ backends: canaryBackends, progression: { canary: 'reviews-v2', stepWeights: [10, 150] } }),
    expect: [/spec\.progression\.stepWeights/, /less than or equal to 100/],
  },
  {
    rule: 'progression: the latency percentile is one the proxy measures',
    obj: split({
      backends: canaryBackends,
      progression: {
        canary: 'reviews-v2',
        stepWeights: [10],
        gates: { maxLatency: { percentile: 98, threshold: '500ms' } },
      },
    }),
    expect: [/spec\.progression\.gates\.maxLatency\.percentile/, /Unsupported value/],
  },
  {
    rule: 'progression: the interval is bounded',
    obj: split({
      backends: canaryBackends,
      progression: { canary: 'reviews-v2', stepWeights: [10], interval: '48h' },
    }),
    expect: [/spec\.progression\.interval/, /progression\.interval must be at most 24h/],
  },
  { rule: 'Mesh is named default', obj: mesh({}, 'other'), expect: [/must be named "default"/] },
  { rule: 'trust domain format', obj: mesh({ trustDomain: 'Bad Domain!' }), expect: [/spec\.trustDomain/] },
  {
    rule: 'tracing endpoint is a URL',
    obj: mesh({ telemetry: { tracing: { endpoint: 'collector:4318' } } }),
    expect: [/spec\.telemetry\.tracing\.endpoint/],
  },
];

describe('CRDs on a real kube-apiserver', () => {
  test('the generated CRDs install and become Established', async (t) => {
    t.diagnostic(`cluster: ${cluster.description}`);
    const names = await installCrds(cluster);
    assert.deepEqual(names.length, 3);
    const resources = cluster
      .kubectl('api-resources', '--api-group=weft.dev', '-o', 'name')
      .trim()
      .split('\n')
      .sort();
    assert.deepEqual(resources, [
      'authorizationpolicies.weft.dev',
      'meshes.weft.dev',
      'trafficsplits.weft.dev',
    ]);
  });

  test('every sample in config/samples applies, defaults are filled in, and the weft category lists them', async () => {
    const out = cluster.kubectl(
      'apply',
      '--server-side',
      '--field-manager=weft-test',
      '-k',
      join(repoRoot, 'config', 'samples'),
    );
    assert.match(out, /mesh\.weft\.dev\/default serverside-applied/);
    assert.match(out, /trafficsplit\.weft\.dev\/reviews-canary serverside-applied/);
    assert.match(out, /authorizationpolicy\.weft\.dev\/deny-admin serverside-applied/);
    const samples = ['mesh.yaml', 'trafficsplit.yaml', 'authorizationpolicy.yaml'].flatMap((f) =>
      readYamlDocs(join(repoRoot, 'config', 'samples', f)),
    );
    assert.equal(samples.length, 6);
    const listed = cluster.kubectl('get', 'weft', '-A', '-o', 'name').trim().split('\n').sort();
    assert.equal(listed.length, 6, listed.join(','));
    // Structural defaults come from the schema.
    const ts = JSON.parse(
      cluster.kubectl('get', 'trafficsplit', 'reviews-beta', '-n', 'default', '-o', 'json'),
    );
    assert.equal(ts.spec.matches[0].headers[0].type, 'Exact');
    const m = JSON.parse(cluster.kubectl('get', 'mesh', 'default', '-o', 'json'));
    assert.equal(m.spec.outboundTrafficPolicy.mode, 'ALLOW_ANY');
    assert.equal(m.spec.proxy.image, WEFT_IMAGE);
    // Short names and printer columns.
    const table = cluster.kubectl('get', 'ts', '-n', 'default');
    assert.match(table, /^NAME\s+SERVICE\s+READY\s+AGE/m);
    assert.match(table, /^reviews-canary\s+reviews\s/m);
    const wide = cluster.kubectl('get', 'ts', 'reviews-canary', '-n', 'default', '-o', 'wide');
    assert.match(wide, /BACKENDS/);
    assert.match(wide, /"service":"reviews-v2","weight":10/);
  });

  test('status is a subresource: a spec write cannot set status', async () => {
    const obj = split({}, 'status-probe');
    await cluster.objects.create({ ...obj, status: { observedGeneration: 7 } } as never);
    const got = JSON.parse(cluster.kubectl('get', 'ts', 'status-probe', '-n', 'default', '-o', 'json'));
    // Only the CRD's default (not observed yet: kstatus InProgress), not the 7 the writer sent.
    assert.deepEqual(got.status, { observedGeneration: 0 });
  });

  test("Istio's string matches are admitted: methods *, G*, *ETE; paths and hosts by prefix, suffix and *", async () => {
    const ok = {
      ...policy({
        action: 'DENY',
        rules: [
          {
            to: [
              { operation: { methods: ['*', 'G*', '*ETE', 'PROPFIND'], paths: ['*', '/api/*', '*.json'] } },
            ],
          },
          { to: [{ operation: { hosts: ['*', '*.shop', 'web.*', 'web.shop:8080'] } }] },
        ],
      }),
      metadata: { name: 'wildcards', namespace: 'default' },
    };
    // A server-side dry run: admitted or refused exactly as a real create, nothing stored.
    await cluster.objects.create(ok as never, undefined, 'All');
  });

  test('the trust domain is immutable', async () => {
    const msg = await refusal(
      cluster.objects.patch(
        {
          apiVersion: 'weft.dev/v1alpha1',
          kind: 'Mesh',
          metadata: { name: 'default' },
          spec: { trustDomain: 'other.example' },
        } as never,
        undefined,
        undefined,
        'weft-test',
        true,
        'application/apply-patch+yaml' as never,
      ),
    );
    assert.match(msg, /spec\.trustDomain/);
    assert.match(msg, /immutable/);
  });

  describe(`${INVALID.length} invalid resources are refused by the apiserver with the field named`, () => {
    for (const { rule, obj, expect } of INVALID) {
      test(rule, async () => {
        const msg = await refusal(cluster.objects.create(obj as never, undefined, 'All'));
        assert.notEqual(msg, '', `the apiserver accepted an invalid ${obj.kind} (${rule})`);
        for (const re of expect) assert.match(msg, re);
      });
    }
  });
});
