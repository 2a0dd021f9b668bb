// The injector as a pure function: the decision (who is injected, who is skipped and why),
// the patch (golden files), and the properties that matter under admission: applying the
// patch gives the expected pod, keeps what the pod had, and re-invoking changes nothing.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { PROXY } from '../api/index.ts';
import { identitySecretName as operatorIdentitySecretName } from '../operator/identity/plan.ts';
import {
  ANNOTATIONS,
  APP_STOP_DELAY_SECONDS,
  COMMANDS,
  identitySecretName,
  MESHED_LABEL,
} from './constants.ts';
import { injectPod, selectorMatches } from './inject.ts';
import { applyPatch } from './jsonpatch.ts';
import { assertGolden } from './testdata/golden.ts';
import { barePod, MESH, typicalPod } from './testdata/pods.ts';

const OPTS = { meshNamespace: 'weft-system' };
const LABELLED = { name: 'shop', labels: { 'weft.dev/inject': 'enabled' } };
const PLAIN = { name: 'shop', labels: {} };

const env = (c: V1Container, name: string) => c.env?.find((e) => e.name === name)?.value;

describe('decision', () => {
  test('a labelled namespace injects; an unlabelled one ignores the pod without touching it', () => {
    assert.equal(injectPod(typicalPod(), LABELLED, MESH, OPTS).action, 'inject');
    const r = injectPod(typicalPod(), PLAIN, MESH, OPTS);
    assert.equal(r.action, 'ignore');
    assert.deepEqual(r.patch, []);
    assert.match(r.reasons[0]!, /does not match the injection selector \(weft.dev\/inject=enabled\)/);
  });

  test('the pod annotation opts in, and opts out with the reason recorded on the pod', () => {
    const optIn = typicalPod();
    optIn.metadata!.annotations![ANNOTATIONS.inject] = 'enabled';
    assert.equal(injectPod(optIn, PLAIN, MESH, OPTS).action, 'inject');

    const optOut = typicalPod();
    optOut.metadata!.annotations![ANNOTATIONS.inject] = 'disabled';
    const r = injectPod(optOut, LABELLED, MESH, OPTS);
    assert.equal(r.action, 'skip');
    const after = applyPatch(optOut, r.patch);
    assert.match(after.metadata!.annotations![ANNOTATIONS.skipped]!, /opts out/);
    assert.equal(after.spec!.initContainers!.length, 1, 'no container added');
  });

  test('kube-system and the mesh namespace are never injected, even when asked', () => {
    for (const name of ['kube-system', 'weft-system']) {
      const pod = typicalPod();
      pod.metadata!.annotations![ANNOTATIONS.inject] = 'enabled';
      const r = injectPod(pod, { name, labels: { 'weft.dev/inject': 'enabled' } }, MESH, OPTS);
      assert.equal(r.action, 'ignore');
      assert.deepEqual(r.patch, []);
      assert.match(r.reasons[0]!, /never injected/);
    }
  });

  test('hostNetwork pods, reserved ports and the proxy UID are skipped with reasons', () => {
    const host = typicalPod();
    host.spec!.hostNetwork = true;
    assert.match(injectPod(host, LABELLED, MESH, OPTS).reasons.join(), /hostNetwork/);

    const port = typicalPod();
    port.spec!.containers[0]!.ports!.push({ containerPort: PROXY.inboundPort });
    port.spec!.containers[1]!.securityContext = { runAsUser: PROXY.uid };
    const r = injectPod(port, LABELLED, MESH, OPTS);
    assert.equal(r.action, 'skip');
    assert.match(r.reasons.join('\n'), /container web uses port 15006/);
    assert.match(r.reasons.join('\n'), /container sidecar runs as UID 1337/);
  });

  test('malformed exclusion annotations deny admission with a message naming the annotation', () => {
    const pod = typicalPod();
    pod.metadata!.annotations![ANNOTATIONS.excludeOutboundCidrs] = '10.0.0.0/8,not-a-cidr';
    const r = injectPod(pod, LABELLED, MESH, OPTS);
    assert.equal(r.action, 'deny');
    assert.match(r.reasons[0]!, /weft.dev\/exclude-outbound-cidrs: "not-a-cidr"/);
    pod.metadata!.annotations![ANNOTATIONS.excludeOutboundCidrs] = '';
    pod.metadata!.annotations![ANNOTATIONS.excludeInboundPorts] = '80,70000';
    assert.match(injectPod(pod, LABELLED, MESH, OPTS).reasons[0]!, /exclude-inbound-ports: "70000"/);
    pod.metadata!.annotations![ANNOTATIONS.excludeInboundPorts] = '80, 15001';
    const own = injectPod(pod, LABELLED, MESH, OPTS);
    assert.equal(own.action, 'deny');
    assert.match(own.reasons[0]!, /exclude-inbound-ports: 15001 is a port of the Weft proxy's own listeners/);
  });

  test("the Mesh's namespace selector replaces the default label", () => {
    const mesh = {
      ...MESH,
      injection: {
        namespaceSelector: { matchExpressions: [{ key: 'tier', operator: 'In' as const, values: ['web'] }] },
      },
    };
    assert.equal(
      injectPod(typicalPod(), { name: 'a', labels: { tier: 'web' } }, mesh, OPTS).action,
      'inject',
    );
    assert.equal(injectPod(typicalPod(), LABELLED, mesh, OPTS).action, 'ignore');
  });

  test('selectorMatches follows Kubernetes semantics', () => {
    const l = { a: '1', b: '2' };
    assert.ok(selectorMatches({}, l));
    assert.ok(
      selectorMatches(
        { matchLabels: { a: '1' }, matchExpressions: [{ key: 'c', operator: 'DoesNotExist' }] },
        l,
      ),
    );
    assert.ok(!selectorMatches({ matchExpressions: [{ key: 'b', operator: 'NotIn', values: ['2'] }] }, l));
    assert.ok(!selectorMatches({ matchExpressions: [{ key: 'c', operator: 'Exists' }] }, l));
    assert.ok(selectorMatches({ matchExpressions: [{ key: 'c', operator: 'NotIn', values: ['x'] }] }, l));
  });
});

describe('patch', () => {
  test('typical pod: golden patch', () => {
    const r = injectPod(typicalPod(), LABELLED, MESH, OPTS);
    assertGolden('inject-typical.json', r.patch);
    assert.deepEqual(r.reasons, [
      'container sidecar readinessProbe uses HTTPS: left unchanged (the proxy forwards plain HTTP probes only)',
    ]);
  });

  test('bare pod (no maps, no init containers, no volumes) and exclusions: golden patch', () => {
    const pod = barePod();
    assertGolden('inject-bare.json', injectPod(pod, LABELLED, undefined, OPTS).patch);
    const excl = barePod('excl');
    excl.metadata!.annotations = {
      [ANNOTATIONS.excludeInboundPorts]: '9090, 9091',
      [ANNOTATIONS.excludeOutboundPorts]: '5432',
      [ANNOTATIONS.excludeOutboundCidrs]: '169.254.169.254/32,fd00::/8',
    };
    assertGolden('inject-exclusions.json', injectPod(excl, LABELLED, undefined, OPTS).patch);
    const host = barePod('host');
    host.spec!.hostNetwork = true;
    assertGolden('skip-hostnetwork.json', injectPod(host, LABELLED, undefined, OPTS).patch);
  });

  test('the patched pod has the native sidecar, the redirect, volumes, env and rewritten probes', () => {
    const before = typicalPod();
    const pod = applyPatch(before, injectPod(before, LABELLED, MESH, OPTS).patch);
    const spec = pod.spec!;
    assert.deepEqual(
      spec.initContainers!.map((c) => c.name),
      [PROXY.initContainerName, PROXY.containerName, 'migrate'],
      'the redirect, then the proxy, then the pod’s own init containers',
    );
    const [init, proxy] = spec.initContainers!;
    assert.deepEqual(init!.command, [...COMMANDS.init]);
    assert.equal(env(init!, 'WEFT_PROXY_UID'), '1337');
    assert.equal(env(init!, 'WEFT_OUTBOUND_PORT'), '15001');
    assert.equal(env(init!, 'WEFT_INBOUND_PORT'), '15006');
    assert.deepEqual(init!.securityContext!.capabilities!.add, ['NET_ADMIN', 'NET_RAW']);

    assert.equal(proxy!.restartPolicy, 'Always', 'native sidecar');
    assert.deepEqual(proxy!.command, [...COMMANDS.proxy]);
    assert.equal(proxy!.image, MESH.proxy!.image);
    assert.deepEqual(proxy!.resources, MESH.proxy!.resources);
    assert.equal(proxy!.securityContext!.runAsUser, PROXY.uid);
    assert.equal(proxy!.startupProbe!.httpGet!.port, PROXY.healthPort);
    assert.equal(proxy!.readinessProbe!.httpGet!.port, PROXY.healthPort);
    assert.deepEqual(
      proxy!.env!.filter((e) => e.valueFrom).map((e) => [e.name, e.valueFrom!.fieldRef!.fieldPath]),
      [
        ['WEFT_POD_NAME', 'metadata.name'],
        ['WEFT_NAMESPACE', 'metadata.namespace'],
        ['WEFT_SERVICE_ACCOUNT', 'spec.serviceAccountName'],
        ['WEFT_POD_IP', 'status.podIP'],
      ],
    );
    assert.equal(env(proxy!, 'WEFT_LOG_LEVEL'), 'debug');
    assert.deepEqual(
      proxy!.volumeMounts!.map((m) => m.mountPath),
      [PROXY.configDir, PROXY.identityDir, PROXY.podInfoDir, PROXY.tokenDir],
    );
    assert.equal(env(proxy!, 'WEFT_TOKEN_DIR'), PROXY.tokenDir);

    assert.deepEqual(
      spec.volumes!.map((v) => v.name),
      ['data', 'weft-config', 'weft-identity', 'weft-podinfo', 'weft-token'],
    );
    // The proxy's own token for the config fast path, even with automountServiceAccountToken off.
    assert.deepEqual(
      spec.volumes![4]!.projected!.sources!.map((s) => s.serviceAccountToken?.path ?? s.configMap?.name),
      ['token', 'kube-root-ca.crt'],
    );
    const config = spec.volumes![1]!.projected!.sources!;
    assert.deepEqual(
      config.map((s) => [s.configMap!.name, s.configMap!.optional]),
      [
        ['weft-proxy-config', true],
        ['weft-proxy-config-1', true],
        ['weft-proxy-config-2', true],
        ['weft-proxy-config-3', true],
      ],
    );
    assert.equal(spec.volumes![2]!.secret!.secretName, 'weft-identity-web');
    assert.equal(spec.volumes![2]!.secret!.optional, true);

    const web = spec.containers[0]!;
    assert.deepEqual(web.readinessProbe!.httpGet, {
      path: '/app-health/8080/ready',
      port: 15020,
      scheme: 'HTTP',
    });
    assert.equal(web.readinessProbe!.periodSeconds, 2, 'the rest of the probe is kept');
    assert.deepEqual(web.livenessProbe!.httpGet, {
      path: '/app-health/9090/live',
      port: 15020,
      scheme: 'HTTP',
    });
    assert.deepEqual(web.startupProbe, { tcpSocket: { port: 8080 } }, 'TCP probes are left alone');
    assert.equal(spec.containers[1]!.readinessProbe!.httpGet!.scheme, 'HTTPS');
    assert.deepEqual(JSON.parse(pod.metadata!.annotations![ANNOTATIONS.appProbes]!), {
      web: { readinessProbe: { port: 8080, path: '/ready' }, livenessProbe: { port: 9090, path: '/live' } },
    });

    // What the pod had is kept.
    assert.deepEqual(web.env, [{ name: 'MODE', value: 'prod' }]);
    assert.equal(pod.metadata!.annotations!['example.com/owner'], 'team-a');
    assert.equal(pod.metadata!.labels!.app, 'web');
    assert.equal(pod.metadata!.labels![MESHED_LABEL], 'true');
  });

  test("app containers stop after a delay (a preStop sleep), within the pod's grace period, keeping their own preStop", () => {
    const pod = typicalPod();
    pod.spec!.containers[1]!.lifecycle = { preStop: { exec: { command: ['drain'] } } };
    pod.spec!.containers[0]!.lifecycle = { postStart: { exec: { command: ['warm'] } } };
    let after = applyPatch(pod, injectPod(pod, LABELLED, MESH, OPTS).patch);
    assert.deepEqual(after.spec!.containers[0]!.lifecycle, {
      postStart: { exec: { command: ['warm'] } },
      preStop: { sleep: { seconds: APP_STOP_DELAY_SECONDS } },
    });
    assert.deepEqual(after.spec!.containers[1]!.lifecycle, { preStop: { exec: { command: ['drain'] } } });
    assert.equal(
      after.spec!.initContainers!.find((c) => c.name === PROXY.containerName)!.lifecycle,
      undefined,
      'the sidecar stops after the app anyway (native sidecar)',
    );
    const short = barePod();
    short.spec!.terminationGracePeriodSeconds = 3;
    after = applyPatch(short, injectPod(short, LABELLED, MESH, OPTS).patch);
    assert.deepEqual(after.spec!.containers[0]!.lifecycle, { preStop: { sleep: { seconds: 2 } } });
    short.spec!.terminationGracePeriodSeconds = 1;
    after = applyPatch(short, injectPod(short, LABELLED, MESH, OPTS).patch);
    assert.equal(after.spec!.containers[0]!.lifecycle, undefined, 'no time to wait: no delay');
  });

  test('reinvocation on the injected pod changes nothing (idempotent)', () => {
    for (const before of [typicalPod(), barePod()]) {
      const once = applyPatch(before, injectPod(before, LABELLED, MESH, OPTS).patch);
      const again = injectPod(once, LABELLED, MESH, OPTS);
      assert.equal(again.action, 'ignore');
      assert.deepEqual(again.patch, []);
      assert.match(again.reasons[0]!, /already has the Weft proxy/);
    }
    const host = barePod();
    host.spec!.hostNetwork = true;
    const skipped = applyPatch(host, injectPod(host, LABELLED, MESH, OPTS).patch);
    assert.deepEqual(
      injectPod(skipped, LABELLED, MESH, OPTS).patch,
      [],
      'the skip annotation is not re-added',
    );
  });

  test('a pod without a ServiceAccount name mounts the default identity', () => {
    const pod = applyPatch(barePod(), injectPod(barePod(), LABELLED, undefined, OPTS).patch) as V1Pod;
    assert.equal(
      pod.spec!.volumes!.find((v) => v.name === 'weft-identity')!.secret!.secretName,
      'weft-identity-default',
    );
  });

  test('the identity Secret name agrees with the operator', () => {
    for (const sa of ['default', 'web', 'a'.repeat(300)])
      assert.equal(identitySecretName(sa), operatorIdentitySecretName(sa));
  });
});
