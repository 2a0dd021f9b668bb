// Unit tests of the local node's pure parts: the atomic writer, env, command mapping, VIP rules, CIDRs.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node';
import { containerEnv, expand, serviceEnv } from './env.ts';
import { LocalNodeError } from './errors.ts';
import { type CommandPaths, launchScript, mapCommand, type Tools } from './exec.ts';
import { IpAllocator, parseCidr } from './network.ts';
import { renderVipChain, vipRules } from './services.ts';
import { fieldRefValue, type Payload, type VolumeSources, volumePayload, writeAtomic } from './volumes.ts';

const tmp = mkdtempSync(join(tmpdir(), 'weft-ln-unit-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const file = (s: string, mode = 0o644) => ({ data: Buffer.from(s), mode });
const pod: V1Pod = {
  metadata: { name: 'p', namespace: 'ns', uid: 'u1', labels: { b: '2', a: 'x"y' }, annotations: { k: 'v' } },
  spec: { containers: [], serviceAccountName: 'sa', nodeName: 'n1' },
  status: { podIP: '10.244.0.7', hostIP: '10.244.0.1' },
};

describe('writeAtomic', () => {
  it('writes files behind ..data symlinks and swaps the whole content at once', async () => {
    const dir = join(tmp, 'vol');
    assert.equal(
      await writeAtomic(
        dir,
        new Map([
          ['a', file('1')],
          ['sub/b', file('2', 0o600)],
        ]),
      ),
      true,
    );
    assert.equal(readlinkSync(join(dir, 'a')), '..data/a');
    assert.equal(readlinkSync(join(dir, 'sub')), '..data/sub');
    assert.equal(readFileSync(join(dir, 'sub', 'b'), 'utf8'), '2');
    assert.equal(statSync(join(dir, 'sub', 'b')).mode & 0o777, 0o600);
    const first = readlinkSync(join(dir, '..data'));

    assert.equal(
      await writeAtomic(
        dir,
        new Map([
          ['a', file('1')],
          ['sub/b', file('2', 0o600)],
        ]),
      ),
      false,
      'no change, no write',
    );
    assert.equal(readlinkSync(join(dir, '..data')), first);

    assert.equal(
      await writeAtomic(
        dir,
        new Map([
          ['a', file('new')],
          ['c', file('3')],
        ]),
      ),
      true,
    );
    const second = readlinkSync(join(dir, '..data'));
    assert.notEqual(second, first);
    assert.equal(readFileSync(join(dir, 'a'), 'utf8'), 'new');
    assert.equal(readFileSync(join(dir, 'c'), 'utf8'), '3');
    assert.ok(!existsSync(join(dir, 'sub')), 'a removed key disappears');
    assert.ok(!existsSync(join(dir, first)), 'the old timestamped directory is removed');
    assert.deepEqual(readdirSync(dir).sort(), ['..data', second, 'a', 'c'].sort());
  });

  it('refuses paths that escape the volume', async () => {
    await assert.rejects(
      writeAtomic(join(tmp, 'bad'), new Map([['../x', file('')]]) as Payload),
      (e: unknown) => {
        return e instanceof LocalNodeError && e.code === 'WEFT_LN_VOLUME';
      },
    );
  });
});

describe('volume payloads', () => {
  const sources: VolumeSources = {
    configMap: (ns, n) =>
      ns === 'ns' && n === 'cm' ? { data: { x: '1', y: '2' }, binaryData: { z: 'AAE=' } } : undefined,
    secret: (ns, n) =>
      ns === 'ns' && n === 's' ? { data: { 'tls.crt': Buffer.from('C').toString('base64') } } : undefined,
    token: async () => 'tok',
  };
  it('projects configMap items, secrets, downward API and tokens; optional sources may be missing', async () => {
    const p = await volumePayload(
      pod,
      {
        name: 'v',
        projected: {
          defaultMode: 0o640,
          sources: [
            { configMap: { name: 'cm', items: [{ key: 'y', path: 'dir/y' }] } },
            { configMap: { name: 'missing', optional: true } },
            { secret: { name: 's' } },
            { downwardAPI: { items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }] } },
            { serviceAccountToken: { path: 'token', audience: 'aud' } },
          ],
        },
      },
      sources,
    );
    assert.deepEqual(
      Object.fromEntries([...p!].map(([k, v]) => [k, [v.data.toString(), v.mode.toString(8)]])),
      {
        'dir/y': ['2', '640'],
        'tls.crt': ['C', '640'],
        labels: ['a="x\\"y"\nb="2"', '640'],
        token: ['tok', '644'],
      },
    );
    const cm = await volumePayload(pod, { name: 'c', configMap: { name: 'cm' } }, sources);
    assert.deepEqual(cm?.get('z')?.data, Buffer.from([0, 1]));
  });
  it('a missing non-optional source keeps the pod waiting (WEFT_LN_VOLUME)', async () => {
    await assert.rejects(
      volumePayload(pod, { name: 'v', configMap: { name: 'nope' } }, sources),
      (e: unknown) => e instanceof LocalNodeError && e.code === 'WEFT_LN_VOLUME',
    );
  });
  it('resolves downward-API field paths', () => {
    assert.equal(fieldRefValue(pod, 'metadata.name'), 'p');
    assert.equal(fieldRefValue(pod, "metadata.labels['b']"), '2');
    assert.equal(fieldRefValue(pod, 'spec.serviceAccountName'), 'sa');
    assert.equal(fieldRefValue(pod, 'status.podIP'), '10.244.0.7');
  });
});

describe('environment', () => {
  const svc = (
    ns: string,
    name: string,
    ip: string,
    ports: { name?: string; port: number }[],
  ): V1Service => ({
    metadata: { namespace: ns, name },
    spec: { clusterIP: ip, ports },
  });
  it('expands $(VAR) like the kubelet', () => {
    assert.equal(expand('a $(X) $(Y) $$(X) $(', { X: '1' }), 'a 1 $(Y) $(X) $(');
  });
  it('builds Service link variables', () => {
    const env = serviceEnv([svc('ns', 'my-svc', '10.96.0.9', [{ name: 'http', port: 80 }, { port: 9090 }])]);
    assert.equal(env.MY_SVC_SERVICE_HOST, '10.96.0.9');
    assert.equal(env.MY_SVC_SERVICE_PORT, '80');
    assert.equal(env.MY_SVC_SERVICE_PORT_HTTP, '80');
    assert.equal(env.MY_SVC_PORT, 'tcp://10.96.0.9:80');
    assert.equal(env.MY_SVC_PORT_9090_TCP_ADDR, '10.96.0.9');
  });
  it('combines Service links, envFrom and env with field refs and expansion', () => {
    const sources: VolumeSources = {
      configMap: () => ({ data: { FROM_CM: 'c' } }),
      secret: () => undefined,
      token: async () => '',
    };
    const env = containerEnv(
      pod,
      {
        name: 'c',
        envFrom: [{ configMapRef: { name: 'cm' }, prefix: 'P_' }],
        env: [
          { name: 'IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
          { name: 'URL', value: 'http://$(IP):$(REVIEWS_SERVICE_PORT)' },
          { name: 'OPT', valueFrom: { secretKeyRef: { name: 'x', key: 'y', optional: true } } },
        ],
      },
      [
        svc('ns', 'reviews', '10.96.0.5', [{ port: 9080 }]),
        svc('default', 'kubernetes', '10.96.0.1', [{ port: 443 }]),
      ],
      sources,
      '/n/bin',
    );
    assert.equal(env.P_FROM_CM, 'c');
    assert.equal(env.URL, 'http://10.244.0.7:9080');
    assert.equal(env.KUBERNETES_SERVICE_HOST, '10.96.0.1');
    assert.ok(env.PATH?.startsWith('/n/bin:'));
    assert.ok(!('OPT' in env));
  });
});

describe('command mapping', () => {
  const paths: CommandPaths = { repoRoot: '/repo', nodeBin: '/repo/node', weftEntry: '/repo/cmd/weft.ts' };
  it('runs weft through cmd/weft.ts and node as the project Node', () => {
    assert.deepEqual(mapCommand({ name: 'c', command: ['weft', 'proxy'], args: ['--x'] }, paths), [
      '/repo/node',
      '/repo/cmd/weft.ts',
      'proxy',
      '--x',
    ]);
    assert.deepEqual(mapCommand({ name: 'c', image: 'ghcr.io/weft/weft:0.1', args: ['operator'] }, paths), [
      '/repo/node',
      '/repo/cmd/weft.ts',
      'operator',
    ]);
    assert.deepEqual(mapCommand({ name: 'c', command: ['node', 'a.ts'] }, paths), ['/repo/node', 'a.ts']);
    assert.deepEqual(
      mapCommand({ name: 'c', command: ['sh', '-c', 'echo $(X)'] }, paths, (s) => s.replace('$(X)', '1')),
      ['sh', '-c', 'echo 1'],
    );
  });
  it('falls back to proxy/main.ts before cmd/weft.ts exists, and says so otherwise', () => {
    const early = { ...paths, weftEntry: undefined };
    assert.deepEqual(mapCommand({ name: 'c', command: ['weft', 'proxy', '--a'] }, early), [
      '/repo/node',
      '/repo/proxy/main.ts',
      '--a',
    ]);
    assert.throws(
      () => mapCommand({ name: 'c', command: ['weft', 'operator'] }, early),
      (e: unknown) => {
        return e instanceof LocalNodeError && e.code === 'WEFT_LN_COMMAND';
      },
    );
    assert.throws(
      () => mapCommand({ name: 'c', image: 'nginx' }, paths),
      (e: unknown) => {
        return e instanceof LocalNodeError && e.code === 'WEFT_LN_NO_COMMAND';
      },
    );
  });
  it('bind-mounts volumes and drops to the container UID in the launch script', () => {
    const t = { mkdir: 'mkdir', mount: 'mount', touch: 'touch', setpriv: 'setpriv' } as Tools;
    const script = launchScript(t, {
      mounts: [{ source: "/s/it's", target: '/etc/weft/config', readOnly: true, file: false }],
      uid: 1337,
      gid: 1337,
      cwd: '/repo',
    });
    assert.match(script, /mount --bind '\/s\/it'\\''s' '\/etc\/weft\/config'/);
    assert.match(script, /mount -o remount,bind,ro '\/etc\/weft\/config'/);
    assert.match(script, /exec setpriv --reuid=1337 --regid=1337 --clear-groups -- "\$@"$/);
  });
});

describe('network helpers', () => {
  it('hands out pod addresses after the gateway and reuses released ones', () => {
    const a = new IpAllocator(parseCidr('10.244.3.9/24'));
    assert.equal(a.gateway, '10.244.3.1');
    assert.equal(a.allocate(), '10.244.3.2');
    assert.equal(a.allocate(), '10.244.3.3');
    a.release('10.244.3.2');
    assert.equal(a.allocate(), '10.244.3.2');
    const tiny = new IpAllocator(parseCidr('10.0.0.0/30'));
    tiny.allocate();
    assert.throws(
      () => tiny.allocate(),
      (e: unknown) => e instanceof LocalNodeError && e.code === 'WEFT_LN_IP_EXHAUSTED',
    );
  });
  it('renders DNAT rules for ready endpoints in the pod range only', () => {
    const services: V1Service[] = [
      {
        metadata: { namespace: 'ns', name: 'r' },
        spec: { clusterIP: '10.96.0.5', ports: [{ name: 'http', port: 80 }] },
      },
    ];
    const slices: V1EndpointSlice[] = [
      {
        metadata: { namespace: 'ns', name: 'r-1', labels: { 'kubernetes.io/service-name': 'r' } },
        addressType: 'IPv4',
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
        endpoints: [
          { addresses: ['10.244.0.3'], conditions: { ready: true } },
          { addresses: ['10.244.0.2'], conditions: { ready: true } },
          { addresses: ['10.244.0.4'], conditions: { ready: false } },
          { addresses: ['192.168.1.1'], conditions: { ready: true } },
        ],
      },
    ];
    const rules = vipRules(services, slices, parseCidr('10.244.0.0/24'));
    assert.deepEqual(rules, [
      {
        vip: '10.96.0.5',
        port: 80,
        protocol: 'TCP',
        endpoints: [
          { ip: '10.244.0.2', port: 8080 },
          { ip: '10.244.0.3', port: 8080 },
        ],
      },
    ]);
    assert.equal(
      renderVipChain('C', rules),
      [
        '*nat',
        ':C - [0:0]',
        '-A C -d 10.96.0.5/32 -p tcp -m tcp --dport 80 -m statistic --mode random --probability 0.50000 -j DNAT --to-destination 10.244.0.2:8080',
        '-A C -d 10.96.0.5/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.0.3:8080',
        'COMMIT',
        '',
      ].join('\n'),
    );
  });
});
