// The upstream Gateway API conformance suite (sigs.k8s.io/gateway-api/conformance, pinned in
// hack/conformance) against Weft on the real one-node cluster, as `npm run conformance` runs it:
// its own node (the kubelet at its default syncFrequency), Weft installed by Helm from its
// image, the Gateway API CRDs, the suite's echo images built here, the profiles MESH-HTTP and
// MESH-GRPC with every extended mesh feature declared supported, and GATEWAY-HTTP (Weft's own
// gateway, docs/ingress.md) with the extended features hack/conformance/run.ts declares, in one
// invocation of the suite. It asserts that every core test of each profile and every test of a
// supported extended feature passes, except the tests docs/gateway-api.md ("Conformance") lists
// with a reason (and those must still fail: a listed test that passes is a stale exception);
// and that the run left nothing on the host. It logs the run's duration as a figure.
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Profile } from '../../hack/conformance/build.ts';
import {
  type ConformanceRun,
  DEFAULT_PROFILES,
  OWN_CLUSTER,
  runConformance,
  SUPPORTED_FEATURES,
  summary,
} from '../../hack/conformance/run.ts';
import { GATEWAY_API_VERSION } from '../../hack/gateway-api.ts';
import { snapshotHost } from '../../hack/node/host.ts';
import { repoRoot } from '../support/cluster.ts';
import { EMPTY_LEFTOVERS, leftovers } from '../support/leftovers.ts';

const isRoot = process.getuid?.() === 0;
const log = (l: string) => process.stderr.write(`${l}\n`);

/** The tests docs/gateway-api.md lists as exceptions for `profile` (`| MESH-HTTP | `Name` | why |`). */
function documentedExceptions(profile: Profile): string[] {
  const doc = readFileSync(join(repoRoot, 'docs/gateway-api.md'), 'utf8');
  const section = doc.split(/^## /m).find((s) => s.startsWith('Conformance')) ?? '';
  const names: string[] = [];
  for (const line of section.split('\n')) {
    const m = /^\| ([A-Z]+-[A-Z]+) \| `([^`]+)` \|/.exec(line);
    if (m && m[1] === profile) names.push(m[2]!);
  }
  return names.sort();
}

/** Why `name` failed: the failure lines of its subtests (the test's own are its setup's log). */
function why(run: ConformanceRun, name: string): string {
  const subs = [...run.failures].filter(([k]) => k.startsWith(`${name}/`));
  return (subs.length ? subs : [...run.failures].filter(([k]) => k === name))
    .map(
      ([k, lines]) =>
        `${k}: ${lines
          .filter((l) => !/^(apply|conformance)\.go:/.test(l))
          .slice(-3)
          .join(' ')}`,
    )
    .join(' | ');
}

describe('the Gateway API conformance suite (MESH-HTTP, MESH-GRPC, GATEWAY-HTTP) against Weft on the real node', {
  skip: isRoot ? false : 'needs root (containerd, kubelet, iptables)',
}, () => {
  let run: ConformanceRun;
  let hostBefore: ReturnType<typeof snapshotHost>;
  // WEFT_CONFORMANCE_REPORT keeps the suite's report there (e.g. bench/results/gateway-conformance.yaml).
  const kept = process.env.WEFT_CONFORMANCE_REPORT;
  const report = kept ? resolve(kept) : join(tmpdir(), `weft-conformance-report-${process.pid}.yaml`);

  before(async () => {
    // The snapshot waits for the real-cluster lock: before it, another test's cluster may run.
    run = await runConformance({
      report,
      log,
      onLocked: () => {
        hostBefore = snapshotHost();
      },
    });
    log(
      `[e2e] figure: npm run conformance (${DEFAULT_PROFILES.join(', ')}): ${Math.round(run.durationMs / 1000)} s in all`,
    );
    for (const l of summary(run.report)) log(`[e2e] ${l}`);
    for (const [name, lines] of run.failures) log(`[e2e] failed: ${name}: ${lines.join(' ')}`);
  });

  after(() => {
    if (!kept) rmSync(report, { force: true });
  });

  test('the suite reported on every profile, in its own format, for the pinned Gateway API', () => {
    assert.equal(run.report.kind, 'ConformanceReport');
    assert.equal(run.report.gatewayAPIVersion, GATEWAY_API_VERSION);
    assert.equal(run.report.gatewayAPIChannel, 'standard');
    assert.deepEqual(run.report.profiles.map((p) => p.name).sort(), [...DEFAULT_PROFILES].sort());
  });

  for (const profile of DEFAULT_PROFILES) {
    test(`${profile}: every core test passes but the documented exceptions`, () => {
      const p = run.report.profiles.find((x) => x.name === profile);
      assert.ok(p, `${profile} is in the report`);
      const exceptions = documentedExceptions(profile);
      const notPassed = [...(p.core.failedTests ?? []), ...(p.core.skippedTests ?? [])];
      const unexpected = notPassed.filter((t) => !exceptions.includes(t));
      assert.deepEqual(
        unexpected.map((t) => `${t}: ${why(run, t) || 'skipped'}`),
        [],
        `core tests of ${profile} that did not pass`,
      );
      assert.ok(p.core.statistics.Passed > 0, `${profile}: some core test ran and passed`);
    });

    test(`${profile}: every test of a supported extended feature passes but the documented exceptions`, () => {
      const p = run.report.profiles.find((x) => x.name === profile);
      assert.ok(p, `${profile} is in the report`);
      // The profile's own extended features Weft declares: none may be left unsupported.
      assert.deepEqual(
        SUPPORTED_FEATURES[profile].filter((f) => p.extended?.unsupportedFeatures?.includes(f)),
        [],
        'the suite took every feature Weft declares as supported',
      );
      const exceptions = documentedExceptions(profile);
      const notPassed = [...(p.extended?.failedTests ?? []), ...(p.extended?.skippedTests ?? [])];
      const unexpected = notPassed.filter((t) => !exceptions.includes(t));
      assert.deepEqual(
        unexpected.map((t) => `${t}: ${why(run, t) || 'skipped'}`),
        [],
        `extended tests of ${profile} that did not pass`,
      );
    });

    test(`${profile}: every documented exception still fails (none is stale)`, () => {
      // From the suite's output: some mesh tests are in no profile's report (outcomesOf).
      assert.deepEqual(
        documentedExceptions(profile)
          .filter((t) => run.outcomes.get(t) !== 'FAIL')
          .map((t) => `${t}: ${run.outcomes.get(t) ?? 'not run'}`),
        [],
        'listed in docs/gateway-api.md but passed (or not run): remove them from the list',
      );
    });
  }

  test('every mesh test ran and passed but the documented exceptions, also those no profile report counts', () => {
    // MeshConsumerRoute, MeshFrontend, MeshFrontendHostname and MeshPorts also need an HTTPRoute
    // feature, so the suite leaves them out of the mesh profiles' reports: their outcome is read
    // from its output.
    const exceptions = DEFAULT_PROFILES.flatMap(documentedExceptions);
    const mesh = [...run.outcomes].filter(([name]) => name.startsWith('Mesh'));
    assert.ok(mesh.length >= 20, `the suite ran its mesh tests (${mesh.length})`);
    assert.deepEqual(
      mesh
        .filter(([name, outcome]) => outcome !== 'PASS' && !exceptions.includes(name))
        .map(([name, outcome]) => `${name} ${outcome}: ${why(run, name)}`),
      [],
      'mesh tests that did not pass (SKIP: a feature is not declared in SUPPORTED_FEATURES)',
    );
  });

  test('the run removed everything it created: its node, processes, mounts, interfaces, iptables rules, sysctls', () => {
    assert.deepEqual(leftovers(hostBefore, snapshotHost(), OWN_CLUSTER), EMPTY_LEFTOVERS);
  });
});
