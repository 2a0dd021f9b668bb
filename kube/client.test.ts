// The REST client against a real HTTP server on loopback: paths of the kinds the webhook and
// weftctl read, find() (undefined on 404, the apiserver's refusal otherwise), and paged lists.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { KubeClient, RESOURCES, resourcePath } from './client.ts';
import { isConflict, KubeApiError } from './errors.ts';

async function fakeApiserver(answer: (req: IncomingMessage, body: string) => [number, unknown]) {
  const seen: string[] = [];
  const srv = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      seen.push(`${req.method} ${req.url}`);
      const [status, obj] = answer(req, body);
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(obj));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const server = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  const client = new KubeClient({
    getCurrentCluster: () => ({ server }),
    applyToHTTPSOptions: async () => {},
  });
  return {
    client,
    seen,
    close: () => {
      client.close();
      srv.closeAllConnections();
      srv.close();
    },
  };
}

const status = (code: number, reason: string, message: string) => ({
  kind: 'Status',
  apiVersion: 'v1',
  status: 'Failure',
  reason,
  message,
  code,
});

test('the paths of the kinds the webhook and weftctl read', () => {
  const cases: [keyof typeof RESOURCES, string | undefined, string][] = [
    ['customResourceDefinitions', undefined, '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x'],
    [
      'mutatingWebhookConfigurations',
      'ignored',
      '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/x',
    ],
    [
      'validatingWebhookConfigurations',
      undefined,
      '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/x',
    ],
    ['secrets', 'weft-system', '/api/v1/namespaces/weft-system/secrets/x'],
    ['serviceAccounts', 'shop', '/api/v1/namespaces/shop/serviceaccounts/x'],
  ];
  for (const [kind, ns, path] of cases) assert.equal(resourcePath(RESOURCES[kind], ns, 'x'), path, kind);
});

test('find: the object, undefined when it does not exist, the refusal otherwise', async () => {
  const api = await fakeApiserver((req) => {
    if (req.url?.endsWith('/secrets/there')) return [200, { metadata: { name: 'there', namespace: 'a' } }];
    if (req.url?.endsWith('/secrets/forbidden'))
      return [403, status(403, 'Forbidden', 'secrets is forbidden')];
    return [404, status(404, 'NotFound', 'secrets "gone" not found')];
  });
  try {
    assert.equal((await api.client.find(RESOURCES.secrets, 'there', 'a'))?.metadata.name, 'there');
    assert.equal(await api.client.find(RESOURCES.secrets, 'gone', 'a'), undefined);
    await assert.rejects(
      api.client.find(RESOURCES.secrets, 'forbidden', 'a'),
      (e: unknown) =>
        e instanceof KubeApiError && e.statusCode === 403 && /secrets is forbidden/.test(e.message),
    );
    assert.deepEqual(api.seen, [
      'GET /api/v1/namespaces/a/secrets/there',
      'GET /api/v1/namespaces/a/secrets/gone',
      'GET /api/v1/namespaces/a/secrets/forbidden',
    ]);
  } finally {
    api.close();
  }
});

test('update sends the object with its resourceVersion; a conflict is isConflict', async () => {
  let stored = '1';
  const api = await fakeApiserver((_req, body) => {
    const obj = JSON.parse(body) as { metadata: { resourceVersion?: string } };
    if (obj.metadata.resourceVersion !== stored)
      return [409, status(409, 'Conflict', 'the object has been modified')];
    stored = String(Number(stored) + 1);
    return [200, { ...obj, metadata: { ...obj.metadata, resourceVersion: stored } }];
  });
  try {
    const cfg = { metadata: { name: 'weft', resourceVersion: '1' }, webhooks: [] };
    const written = await api.client.update(RESOURCES.mutatingWebhookConfigurations, cfg);
    assert.equal(written.metadata.resourceVersion, '2');
    await assert.rejects(api.client.update(RESOURCES.mutatingWebhookConfigurations, cfg), isConflict);
    assert.deepEqual(api.seen, [
      'PUT /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/weft',
      'PUT /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/weft',
    ]);
  } finally {
    api.close();
  }
});

test('list follows continue tokens across pages, with the label selector on each', async () => {
  const api = await fakeApiserver((req) => {
    const q = new URL(req.url!, 'http://x').searchParams;
    assert.equal(q.get('labelSelector'), 'weft.dev/inject=enabled');
    return q.get('continue')
      ? [200, { items: [{ metadata: { name: 'b' } }], metadata: { resourceVersion: '9' } }]
      : [200, { items: [{ metadata: { name: 'a' } }], metadata: { resourceVersion: '8', continue: 'next' } }];
  });
  try {
    const l = await api.client.list(RESOURCES.namespaces, {
      labelSelector: 'weft.dev/inject=enabled',
      limit: 1,
    });
    assert.deepEqual(
      l.items.map((n) => n.metadata.name),
      ['a', 'b'],
    );
    assert.equal(l.resourceVersion, '9');
  } finally {
    api.close();
  }
});
