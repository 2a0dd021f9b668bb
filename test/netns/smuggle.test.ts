// Request smuggling through the HTTP/1.1 fast paths, end to end: an attacker's bytes reach the
// server sidecar directly (an unmeshed pod, PERMISSIVE mTLS) or through its own sidecar (a meshed
// pod calling the Service VIP). A DENY policy forbids /admin*; the apps print every request they
// parse, so a request that slipped past the policy shows in their output.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type AuthzPolicy, contentVersion, type ProxyConfig } from '../../api/index.ts';
import { endpoint, proxyConfig, service } from '../../proxy/testdata.ts';
import { writeLabels } from './mtlsfixture.ts';
import { type Agent, eventually, type Pod, Topology } from './netns.ts';

const topo = new Topology();
let server: Pod;
let meshed: Agent;
let outsider: Agent;

const denyAdmin: AuthzPolicy = {
  name: 'shop/no-admin',
  namespace: 'shop',
  action: 'DENY',
  selector: { matchLabels: { app: 'web' } },
  rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }],
};

function config(): ProxyConfig {
  // web: a strict node:http app; lax: the same app parsing leniently (insecureHTTPParser).
  const web = service('web', 'shop', '10.96.0.10', 80, [endpoint(server.ip, 8080)]);
  const lax = service('lax', 'shop', '10.96.0.11', 80, [endpoint(server.ip, 8081)]);
  const base = proxyConfig('shop', [lax, web]);
  const { version: _v, ...doc } = { ...base, authorizationPolicies: [denyAdmin] };
  return { ...doc, version: contentVersion(doc) };
}

interface Script {
  got: string[];
  error?: string;
}

/** Where an attack is sent from: straight to the server sidecar, or through the caller's own. */
const paths = () =>
  [
    {
      name: 'straight to the server sidecar',
      agent: outsider,
      host: server.ip,
      port: { web: 8080, lax: 8081 },
    },
    { name: 'through the caller sidecar', agent: meshed, host: '', port: { web: 80, lax: 80 } },
  ] as const;

function target(p: ReturnType<typeof paths>[number], svc: 'web' | 'lax') {
  return { host: p.host || (svc === 'web' ? '10.96.0.10' : '10.96.0.11'), port: p.port[svc] };
}

let markers = 0;
/**
 * The requests app `svc` printed, up to a marker request sent once the attack was answered (a
 * smuggled request rides in the same bytes as the one answered, so the app parsed it before).
 */
async function appRequestsUntilMarker(
  p: ReturnType<typeof paths>[number],
  svc: 'web' | 'lax',
): Promise<string[]> {
  const marker = `/marker-${++markers}`;
  const r = await p.agent.send<Script>({
    op: 'script',
    ...target(p, svc),
    steps: [{ send: `GET ${marker} HTTP/1.1\r\nhost: ${svc}\r\n\r\n`, until: 'HTTP/1.1 ' }],
  });
  assert.match(r.got[0] ?? '', /^HTTP\/1\.1 200 /, `the marker request passes: ${JSON.stringify(r)}`);
  let lines: string[] = [];
  const seen = await eventually(async () => {
    lines = (topo.logs.get(`app-${svc}`) ?? [])
      .join('')
      .split('\n')
      .filter((l) => l.startsWith('request '));
    return lines.some((l) => l.endsWith(` ${marker}`));
  });
  assert.ok(seen, `the app printed the marker request: ${lines.join('\n')}`);
  return lines;
}

describe('request smuggling through the HTTP/1.1 fast paths', { timeout: 240_000 }, () => {
  before(async () => {
    await topo.create();
    const caller = await topo.addPod('caller');
    const outside = await topo.addPod('outside');
    server = await topo.addPod('server');
    await topo.writeConfig(config());
    for (const p of [caller, server]) await topo.intercept(p);
    const info = await topo.tempDir('info-server');
    await writeLabels(info, { app: 'web' });
    // Two processes in the server pod: the tags keep their output apart.
    const web = topo.spawnIn(
      server,
      ['test/netns/fixtures/app.ts', JSON.stringify({ name: 'web', http: 8080, logRequests: true })],
      { tag: 'app-web' },
    );
    const lax = topo.spawnIn(
      server,
      [
        'test/netns/fixtures/app.ts',
        JSON.stringify({ name: 'lax', http: 8081, lenient: true, logRequests: true }),
      ],
      { tag: 'app-lax' },
    );
    for (const [tag] of [
      ['app-web', web],
      ['app-lax', lax],
    ] as const)
      assert.ok(
        await eventually(async () => (topo.logs.get(tag) ?? []).join('').includes('ready\n')),
        `${tag} started`,
      );
    await Promise.all([topo.startProxy(caller), topo.startProxy(server, ['--pod-info-dir', info])]);
    meshed = await topo.startAgent(caller);
    outsider = await topo.startAgent(outside);
  });
  after(() => topo.destroy());

  it('the DENY on /admin holds for a plain request', async () => {
    for (const p of paths()) {
      const r = await p.agent.send<Script>({
        op: 'script',
        ...target(p, 'web'),
        steps: [{ send: 'GET /admin/secret HTTP/1.1\r\nhost: web\r\n\r\n', until: 'HTTP/1.1 ' }],
      });
      assert.match(r.got[0] ?? '', /^HTTP\/1\.1 403 /, `${p.name}: ${JSON.stringify(r)}`);
    }
  });

  it('an app answering before reading the body: the rest of that body never becomes a request (no smuggle past the DENY)', async () => {
    for (const p of paths()) {
      // POST /early announces 10 + 400 body bytes and sends 10; the app answers at once. The 400
      // bytes left then follow, and a second allowed POST whose body, after LF padding (which an
      // HTTP/1.1 parser skips before a request line), is a request for /admin/secret. Were the
      // app connection reused mid-body, the app would take the second POST's head as the first
      // one's body and parse the padding and the GET as the next request.
      const smuggled = `${'\n'.repeat(1000)}GET /admin/secret HTTP/1.1\r\nhost: web\r\n\r\n`;
      const r = await p.agent.send<Script>({
        op: 'script',
        ...target(p, 'web'),
        steps: [
          {
            send: 'POST /early HTTP/1.1\r\nhost: web\r\ncontent-length: 410\r\n\r\n0123456789',
            until: 'early\n',
          },
          { send: 'x'.repeat(400) },
          {
            send: `POST /ok HTTP/1.1\r\nhost: web\r\ncontent-length: ${smuggled.length}\r\n\r\n${smuggled}`,
            until: 'HTTP/1.1 ',
            count: 2,
          },
        ],
      });
      const second = (r.got[0] ?? '').split('HTTP/1.1 ')[2] ?? '';
      assert.doesNotMatch(second, /admin secret/, `${p.name}: the DENY was bypassed: ${JSON.stringify(r)}`);
      assert.match(
        second,
        /^200 [\s\S]*hello from web/,
        `${p.name}: the second POST answered: ${JSON.stringify(r)}`,
      );
      const seen = await appRequestsUntilMarker(p, 'web');
      assert.ok(!seen.some((l) => l.includes('/admin')), `${p.name}: the app saw ${seen.join(', ')}`);
    }
  });

  it("an app answering before reading the body: another client's request is not swallowed by the unread body", async () => {
    for (const p of paths()) {
      // Five body bytes never come: a reused app connection would eat the next request's first
      // five bytes ("GET /") and answer the rest with 400.
      const r = await p.agent.send<Script>({
        op: 'script',
        ...target(p, 'web'),
        steps: [
          {
            conn: 0,
            send: 'POST /early HTTP/1.1\r\nhost: web\r\ncontent-length: 15\r\n\r\n0123456789',
            until: 'early\n',
          },
          { conn: 1, send: 'GET /ok HTTP/1.1\r\nhost: web\r\n\r\n', until: 'HTTP/1.1 ' },
          { conn: 1, until: 'hello from web' },
        ],
      });
      assert.match(
        r.got[1] ?? '',
        /^HTTP\/1\.1 200 [\s\S]*hello from web/,
        `${p.name}: ${JSON.stringify(r)}`,
      );
    }
  });

  it('a bare LF inside a header value is refused (400), never forwarded to a lenient app as a Transfer-Encoding header', async () => {
    for (const p of paths()) {
      const body = '0\r\n\r\nGET /admin/secret HTTP/1.1\r\nhost: lax\r\n\r\n';
      const r = await p.agent.send<Script>({
        op: 'script',
        ...target(p, 'lax'),
        steps: [
          {
            send: `POST /ok HTTP/1.1\r\nhost: lax\r\nx-note: a\ntransfer-encoding: chunked\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
            until: 'HTTP/1.1 ',
          },
        ],
      });
      const seen = await appRequestsUntilMarker(p, 'lax');
      assert.ok(!seen.some((l) => l.includes('/admin')), `${p.name}: the app saw ${seen.join(', ')}`);
      assert.match(r.got[0] ?? '', /^HTTP\/1\.1 400 /, `${p.name}: ${JSON.stringify(r)}`);
    }
  });
});
