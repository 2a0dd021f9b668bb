// config/webhook/ is generated from webhook/manifests.ts and must be current; the choices the
// docs explain (failure policies, timeouts, selectors, side effects) are pinned here.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { WEBHOOK_NAMES, webhookConfigurations } from './manifests.ts';
import { renderWebhookConfig } from './render.ts';

const configDir = join(fileURLToPath(import.meta.url), '..', '..', 'config', 'webhook');

test('config/webhook/ is up to date (node webhook/render.ts regenerates it)', () => {
  for (const [file, text] of renderWebhookConfig())
    assert.equal(readFileSync(join(configDir, file), 'utf8'), text, `config/webhook/${file} is stale`);
});

test('injection fails closed only where it was asked for; validation fails closed', () => {
  const { mutating, validating } = webhookConfigurations({ namespace: 'weft-system' });
  const [labelled, elsewhere] = mutating.webhooks!;
  assert.equal(labelled!.name, WEBHOOK_NAMES.injectNamespaces);
  assert.equal(labelled!.failurePolicy, 'Fail');
  assert.equal(elsewhere!.failurePolicy, 'Ignore');
  assert.equal(validating.webhooks![0]!.failurePolicy, 'Fail');
  for (const h of [...mutating.webhooks!, ...validating.webhooks!]) {
    assert.equal(h.sideEffects, 'None');
    assert.ok(h.timeoutSeconds! <= 10);
  }
  for (const h of mutating.webhooks!) {
    assert.equal(h.reinvocationPolicy, 'IfNeeded');
    assert.deepEqual(h.namespaceSelector!.matchExpressions![0], {
      key: 'kubernetes.io/metadata.name',
      operator: 'NotIn',
      values: ['kube-system', 'kube-public', 'kube-node-lease', 'weft-system'],
    });
    assert.deepEqual(h.objectSelector, {
      matchExpressions: [{ key: 'weft.dev/control-plane', operator: 'DoesNotExist' }],
    });
  }
});

test('cert-manager mode annotates both configurations for the cainjector', () => {
  const { mutating, validating } = webhookConfigurations({ namespace: 'weft-system', certManager: true });
  for (const c of [mutating, validating])
    assert.equal(c.metadata!.annotations!['cert-manager.io/inject-ca-from'], 'weft-system/weft-webhook');
  const files = renderWebhookConfig();
  assert.match(
    files.get('certmanager/certificate.yaml')!,
    /kind: Certificate[\s\S]*secretName: weft-webhook-tls/,
  );
  assert.match(files.get('certmanager/kustomization.yaml')!, /--tls=cert-manager/);
});
