// HTTP/2 through the proxy's listeners, checked with outside tools in network namespaces:
//   - h2spec (github.com/summerwind/h2spec, built from the module graph pinned in hack/h2spec)
//     against the outbound listener (from a meshed pod at a Service VIP, h2c prior knowledge,
//     no appProtocol) and the inbound listener (from a pod without a sidecar at the pod IP);
//     the cases that fail must be exactly the exceptions docs/proxy.md lists, with reasons.
//   - h2c prior knowledge to an HTTP/1.1 app: the inbound side speaks the app's protocol.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { CertificateAuthority } from '../../operator/identity/ca.ts';
import { endpoint, proxyConfig, service } from '../../proxy/testdata.ts';
import { newCa, writeIdentity } from './mtlsfixture.ts';
import { type Agent, type Pod, Topology } from './netns.ts';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;
const topo = new Topology();
let ca: CertificateAuthority;
let client: Pod;
let server: Pod;
let plain: Pod;
let clientAgent: Agent;
let plainAgent: Agent;
let h2spec = '';

interface H2Result {
  status?: number | string;
  backend?: string;
  body?: string;
  error?: string;
}

/** The h2spec cases docs/proxy.md lists as expected failures for a listener ("outbound", "inbound"). */
async function documentedExceptions(listener: string): Promise<string[]> {
  const doc = await readFile(join(ROOT, 'docs/proxy.md'), 'utf8');
  const section = doc.split(/^## /m).find((s) => s.startsWith('Outside suites')) ?? '';
  const ids: string[] = [];
  for (const line of section.split('\n')) {
    const m = /^\| h2spec (\w+) \| `([^`]+)` \|/.exec(line);
    if (m && m[1] === listener) ids.push(m[2]!);
  }
  return ids.sort();
}

interface JUnitCase {
  id: string;
  title: string;
  outcome: 'passed' | 'failed' | 'skipped';
}

/** h2spec's JUnit report as cases with h2spec's own ids (`<section>/<n>`, e.g. http2/6.5.3/2). */
function parseJUnit(xml: string): JUnitCase[] {
  const out: JUnitCase[] = [];
  for (const suite of xml.matchAll(/<testsuite\b([^>]*)>([\s\S]*?)<\/testsuite>/g)) {
    const pkg = /package="([^"]*)"/.exec(suite[1]!)?.[1] ?? '';
    let n = 0;
    for (const tc of suite[2]!.matchAll(/<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g)) {
      n++;
      const title = /classname="([^"]*)"/.exec(tc[1]!)?.[1] ?? '';
      const body = tc[3] ?? '';
      const outcome = /<(failure|error)\b/.test(body)
        ? 'failed'
        : /<skipped\b/.test(body)
          ? 'skipped'
          : 'passed';
      out.push({ id: `${pkg}/${n}`, title, outcome });
    }
  }
  return out;
}

async function runH2spec(pod: Pod, host: string, port: number, tag: string): Promise<JUnitCase[]> {
  const dir = await topo.tempDir(`h2spec-${tag}`);
  const report = join(dir, 'junit.xml');
  // h2spec exits 1 when a case fails; the report is what is judged.
  await run(
    'ip',
    ['netns', 'exec', pod.ns, h2spec, '-h', host, '-p', String(port), '-o', '3', '-j', report],
    {
      timeout: 300_000,
    },
  ).catch((e) => e);
  return parseJUnit(await readFile(report, 'utf8'));
}

// The Service port is named "web", without appProtocol: nothing declares the app's protocol,
// so the server's sidecar learns it (proxy/appproto.ts).
function config() {
  const web = service('web', 'shop', '10.96.0.10', 80, [
    {
      ...endpoint(server.ip, 8080, { ports: { web: 8080 } }),
      pod: 'server-abc',
      identity: 'spiffe://cluster.local/ns/shop/sa/web',
    },
  ]);
  web.ports = [{ name: 'web', port: 80, protocol: 'TCP' }];
  // The same app behind a port declared HTTP (appProtocol "http", as most charts name ports):
  // h2c prior knowledge must still be spoken, as Istio's "http" ports accept both versions.
  const declared = service('web-http', 'shop', '10.96.0.11', 80, [
    {
      ...endpoint(server.ip, 8080, { ports: { http: 8080 } }),
      pod: 'server-abc',
      identity: 'spiffe://cluster.local/ns/shop/sa/web',
    },
  ]);
  declared.ports = [{ name: 'http', port: 80, protocol: 'TCP', appProtocol: 'http' }];
  return proxyConfig('shop', [declared, web], [], { mtls: { mode: 'PERMISSIVE', ports: [] } });
}

describe('HTTP/2 through the proxy, with h2spec', { timeout: 600_000 }, () => {
  before(async () => {
    const built = run('bash', [
      join(ROOT, 'hack/go-tool.sh'),
      'h2spec',
      'github.com/summerwind/h2spec/cmd/h2spec',
      join(ROOT, 'hack/h2spec'),
    ]);
    await topo.create();
    ca = await newCa();
    client = await topo.addPod('client');
    server = await topo.addPod('server');
    plain = await topo.addPod('plain');
    await topo.writeConfig(config());
    await topo.intercept(client);
    await topo.intercept(server);
    const clientDir = await topo.tempDir('id-client');
    const serverDir = await topo.tempDir('id-server');
    await writeIdentity(clientDir, ca, 'client');
    await writeIdentity(serverDir, ca, 'web');
    await topo.startApp(server, { http: 8080, grpc: 50051 });
    await Promise.all([
      topo.startProxy(client, ['--identity-dir', clientDir]),
      topo.startProxy(server, ['--identity-dir', serverDir]),
    ]);
    clientAgent = await topo.startAgent(client);
    plainAgent = await topo.startAgent(plain);
    h2spec = (await built).stdout.trim();
  });
  after(() => topo.destroy());

  it('h2c prior knowledge to the pod IP of an HTTP/1.1 app: the inbound side speaks HTTP/1.1 to it', async () => {
    const r = await plainAgent.send<H2Result>({ op: 'h2get', url: `http://${server.ip}:8080/` });
    assert.equal(r.status, 200, JSON.stringify(r));
    assert.equal(r.body, 'hello from server\n');
  });

  it('gRPC to the pod IP of an HTTP/2 app that no Service declares: the inbound side speaks HTTP/2 to it', async () => {
    const r = await plainAgent.send<{ status: number; grpcStatus: string; message: string }>({
      op: 'grpc',
      url: `http://${server.ip}:50051`,
      message: 'over h2',
    });
    assert.equal(r.status, 200, JSON.stringify(r));
    assert.equal(r.grpcStatus, '0');
    assert.equal(r.message, 'over h2');
  });

  it('h2c prior knowledge to a Service VIP without appProtocol, from a meshed pod', async () => {
    const r = await clientAgent.send<H2Result>({ op: 'h2get', url: 'http://10.96.0.10/' });
    assert.equal(r.status, 200, JSON.stringify(r));
    assert.equal(r.body, 'hello from server\n');
  });

  it('h2c prior knowledge to a Service VIP whose port is declared appProtocol http, from a meshed pod', async () => {
    const r = await clientAgent.send<H2Result>({ op: 'h2get', url: 'http://10.96.0.11/' });
    assert.equal(r.status, 200, JSON.stringify(r));
    assert.equal(r.body, 'hello from server\n');
  });

  // The outbound listener twice: a port with no appProtocol (detected) and one declared "http"
  // (h2c prior knowledge there got a 400 before: the declared port went straight to HTTP/1.1).
  const runs = [
    {
      listener: 'outbound',
      what: 'a Service port without appProtocol',
      from: () => client,
      host: '10.96.0.10',
      port: 80,
    },
    {
      listener: 'outbound',
      what: 'a Service port declared http',
      from: () => client,
      host: '10.96.0.11',
      port: 80,
    },
    { listener: 'inbound', what: 'the pod IP', from: () => plain, host: '', port: 8080 },
  ] as const;
  for (const { listener, what, from, host, port } of runs) {
    it(`h2spec against the ${listener} listener (${what}): every case passes but the exceptions docs/proxy.md lists`, async () => {
      const cases = await runH2spec(from(), host || server.ip, port, `${listener}-${port}-${host}`);
      assert.ok(cases.length >= 145, `h2spec ran its cases (${cases.length})`);
      const failed = cases.filter((c) => c.outcome === 'failed');
      const passed = cases.filter((c) => c.outcome === 'passed').length;
      const skipped = cases.length - passed - failed.length;
      const summary = `${cases.length} cases: ${passed} passed, ${skipped} skipped, ${failed.length} failed:\n${failed.map((c) => `${c.id} ${c.title}`).join('\n')}`;
      console.log(`h2spec ${listener}: ${summary}`);
      assert.deepEqual(
        failed.map((c) => c.id).sort(),
        await documentedExceptions(listener),
        `h2spec ${listener}: the failures are exactly the documented exceptions\n${summary}`,
      );
    });
  }
});
