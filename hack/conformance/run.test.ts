// npm run conformance's pure parts: its arguments, the suite's flags, the failures read from
// the suite's `go test -v` output, the summary of a report.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GATEWAY_CONTROLLER_NAME } from '../../operator/compile/gatewaytypes.ts';
import {
  CONFORMANCE_GATEWAY_CLASS,
  conformanceGatewayClass,
  failuresOf,
  GATEWAY_GRPC_TESTS,
  outcomesOf,
  parseArgs,
  suiteArgs,
  summary,
} from './run.ts';

describe('npm run conformance', () => {
  it('takes profiles by the suite names and refuses others, naming the flag and the choices', () => {
    assert.deepEqual(parseArgs(['--profiles', 'MESH-HTTP,GATEWAY-HTTP']).profiles, [
      'MESH-HTTP',
      'GATEWAY-HTTP',
    ]);
    assert.throws(
      () => parseArgs(['--profiles', 'MESH-TCP']),
      (e: Error & { code?: string }) =>
        e.code === 'WEFT_CONFORMANCE_SETTING' &&
        /--profiles: "MESH-TCP" is not a profile; use .*MESH-HTTP, MESH-GRPC, GATEWAY-HTTP/.test(e.message),
    );
    assert.throws(() => parseArgs(['--report']), /--report needs a value/);
    assert.throws(() => parseArgs(['--verbose']), /unknown argument "--verbose"; use --profiles/);
  });

  it('gives the suite the profiles, the features, the injection label and the report path', () => {
    const args = suiteArgs(['MESH-HTTP', 'MESH-GRPC'], '/tmp/r.yaml', 'MeshBasic');
    assert.ok(args.includes('-conformance-profiles=MESH-HTTP,MESH-GRPC'));
    assert.ok(args.includes('-namespace-labels=weft.dev/inject=enabled'));
    assert.ok(args.includes('-report-output=/tmp/r.yaml'));
    assert.ok(args.includes('-run-test=MeshBasic'));
    const features = args
      .find((a) => a.startsWith('-supported-features='))!
      .split('=')[1]!
      .split(',');
    assert.ok(features.includes('MeshConsumerRoute') && features.includes('MeshClusterIPMatching'));
    assert.equal(
      args.find((a) => a.startsWith('-skip-tests=')),
      undefined,
      'no gateway: nothing skipped',
    );
    // With GATEWAY-HTTP beside MESH-GRPC the suite would run its gateway GRPCRoute tests too.
    const all = suiteArgs(['MESH-HTTP', 'MESH-GRPC', 'GATEWAY-HTTP'], '/tmp/r.yaml');
    assert.ok(all.includes('-conformance-profiles=MESH-HTTP,MESH-GRPC,GATEWAY-HTTP'));
    assert.ok(all.includes(`-skip-tests=${GATEWAY_GRPC_TESTS.join(',')}`));
    assert.equal(
      suiteArgs(['GATEWAY-HTTP'], '/tmp/r.yaml').find((a) => a.startsWith('-skip-tests=')),
      undefined,
    );
  });

  it("reads each failed test's reason from the suite's output, interleaved tests included", () => {
    const output = [
      '=== RUN   TestConformance/MeshBasic',
      '=== RUN   TestConformance/MeshSplit',
      '=== PAUSE TestConformance/MeshSplit',
      '=== CONT  TestConformance/MeshBasic',
      '    mesh-basic.go:40: 2026-11-30T10:00:00Z: request sent',
      '--- PASS: TestConformance/MeshBasic (1.00s)',
      '=== CONT  TestConformance/MeshSplit',
      '    mesh-split.go:77: ',
      '        \tError Trace:\t/x/mesh-split.go:77',
      '        \tError:      \tCondition never satisfied',
      '        \tTest:       \tTestConformance/MeshSplit',
      '        \tMessages:   \texpected v2 to answer',
      '--- FAIL: TestConformance/MeshSplit (60.00s)',
      '=== RUN   TestConformance/MeshPorts',
      '    mesh-ports.go:50: no route Accepted',
      '--- FAIL: TestConformance/MeshPorts (3.00s)',
    ].join('\n');
    const f = failuresOf(output);
    assert.deepEqual([...f.keys()].sort(), ['MeshPorts', 'MeshSplit']);
    assert.deepEqual(f.get('MeshSplit'), [
      'Error:      \tCondition never satisfied',
      'Messages:   \texpected v2 to answer',
    ]);
    assert.deepEqual(f.get('MeshPorts'), ['mesh-ports.go:50: no route Accepted']);
    assert.deepEqual(
      [
        ...outcomesOf(
          `${output}\n    --- PASS: TestConformance/MeshPorts/sub (1.00s)\n--- SKIP: TestConformance/UDPRoute (0.00s)`,
        ),
      ],
      [
        ['MeshBasic', 'PASS'],
        ['MeshSplit', 'FAIL'],
        ['MeshPorts', 'FAIL'],
        ['UDPRoute', 'SKIP'],
      ],
    );
  });

  it('sums up a report per profile', () => {
    const stats = (p: number, f: number, s: number) => ({ Passed: p, Failed: f, Skipped: s });
    const lines = summary({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'ConformanceReport',
      gatewayAPIVersion: 'v1.6.3',
      gatewayAPIChannel: 'standard',
      mode: 'default',
      profiles: [
        {
          name: 'MESH-HTTP',
          summary: '',
          core: { result: 'success', statistics: stats(5, 0, 0) },
          extended: { result: 'failure', statistics: stats(3, 1, 0) },
        },
      ],
    });
    assert.deepEqual(lines, [
      'MESH-HTTP: core success (5 passed, 0 failed, 0 skipped); extended failure (3 passed, 1 failed, 0 skipped)',
    ]);
  });

  it("gives the gateway profiles the suite's GatewayClass with Weft's controllerName (the suite does not create it)", () => {
    const gc = conformanceGatewayClass();
    assert.equal(gc.metadata.name, CONFORMANCE_GATEWAY_CLASS);
    assert.equal(gc.spec.controllerName, GATEWAY_CONTROLLER_NAME);
    assert.ok(!suiteArgs(['GATEWAY-HTTP'], '/tmp/r.yaml').some((a) => a.startsWith('-gateway-class=')));
  });

  it('sums up a report without profiles (the suite stopped in its setup) as no line, not a crash', () => {
    const report = { apiVersion: 'v1', kind: 'ConformanceReport', profiles: null };
    assert.deepEqual(summary(report as unknown as Parameters<typeof summary>[0]), []);
  });
});
