// A real one-node Kubernetes cluster without Docker: the control plane of
// hack/lib/control-plane.ts (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)
// plus containerd + runc + the CNI bridge plugin (Debian packages), kubelet and kube-proxy in
// iptables mode (built from the pinned k8s.io/kubernetes module) and CoreDNS as a Deployment in
// kube-system. The cluster owns a bridge (weft0), a pod range and a Service range; the apiserver
// binds and advertises the bridge address so pods reach it through the `kubernetes` Service.
// stopRealNode() undoes everything: pods, processes, mounts, interfaces, cgroups, iptables
// chains, sysctls and the fixed host paths it created. See docs/real-node.md.
// @peculiar/x509 needs the Reflect metadata API before it loads (api/pki.ts loads it too, but later).
import 'reflect-metadata';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { crypto, EC, exportPkcs8, newKeyPair, SIGN, selfSignedCa, serialNumber } from '../../api/pki.ts';
import { ensureBinaries, freePort, startControlPlane, waitFor } from '../lib/control-plane.ts';
import { alive } from '../lib/processes.ts';
import { NodeError } from './errors.ts';
import { IPTABLES_SAVE, iptablesChains, iptablesRules, readSysctls, restoreSysctls } from './host.ts';
import {
  BUSYBOX_IMAGE,
  busyboxImage,
  COREDNS_IMAGE,
  corednsImage,
  ensureImage,
  importImage,
  importImageAsync,
  PAUSE_IMAGE,
  pauseImage,
} from './images.ts';
import { allMountPoints } from './mounts.ts';

export { BUSYBOX_IMAGE, COREDNS_IMAGE, importImage, PAUSE_IMAGE };

const repoRoot = join(import.meta.dirname, '..', '..');
const K8S_VERSION = 'v1.34.4';
const BINARIES = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kubelet',
  'kube-proxy',
  'kubectl',
  'coredns',
];
/** Paths the kubelet, containerd and the CNI plugins use whatever their configuration says. */
const FIXED_PATHS = [
  '/var/lib/cni',
  '/var/log/pods',
  '/var/log/containers',
  '/var/lib/kubelet',
  '/run/containerd',
];

export interface RealNodeOptions {
  /** Working directory of the cluster (state, logs, containerd root, kubelet root). */
  dir: string;
  /** Node name; default weft-node. */
  name?: string;
  /** Bridge the pods join; default weft0 (at most 15 characters). */
  bridge?: string;
  /** Pod range, IPv4, /8 to /24; its first address is the bridge's (and the apiserver's). Default 10.123.0.0/16. */
  podCIDR?: string;
  /** Service range, IPv4, /12 to /24; the 10th address is the cluster DNS. Default 10.124.0.0/16. */
  serviceCIDR?: string;
  /**
   * The kubelet's syncFrequency (how often it re-syncs pods, which bounds how late a ConfigMap
   * or Secret volume update reaches a container): a Go duration, default 1m (the kubelet's).
   */
  syncFrequency?: string;
  /** The kubelet's maxPods, 1 to 1000: default 110 (the kubelet's); bench/density.ts runs 200 app pods. */
  maxPods?: number;
  /** Keep the processes running after this process exits (npm run cluster:up). */
  detached?: boolean;
  /** Progress lines; default stderr. */
  log?: (line: string) => void;
}

interface NodeState {
  dir: string;
  name: string;
  bridge: string;
  podCIDR: string;
  serviceCIDR: string;
  containerd: string;
  cgroupRoot: string;
  bin: string;
  kubeconfigPath?: string;
  /** Node processes (containerd, kubelet, kube-proxy), stopped before the control plane. */
  pids: { name: string; pid: number; cmd?: string; args?: string[] }[];
  controlPlanePids: number[];
  sysctls: Record<string, string>;
  /** iptables chains ("save-tool table/chain") that existed before: stop leaves them. */
  chainsBefore: string[];
  netnsBefore: string[];
  /** Fixed host paths that did not exist before: stop removes them. */
  created: string[];
}

export interface RealNode {
  dir: string;
  name: string;
  server: string;
  kubeconfigPath: string;
  kubectl: string;
  /** containerd's socket. */
  containerd: string;
  /** Imports an OCI or Docker image archive into the node's containerd. */
  importImage(archivePath: string): void;
  /** Every process of the cluster (control plane first). */
  pids: number[];
  /** The node's own processes: containerd, kubelet, kube-proxy. */
  processes: { name: string; pid: number }[];
  /** Milliseconds from the kubelet's start until the Node was Ready. */
  nodeReadyMs: number;
  /**
   * Stops one of the node's or the control plane's processes (`signal`, SIGKILL after 15 s) and
   * starts it again with the same command line and log; returns the new pid (a fault of
   * bench/faults.ts; `pids` and `stop` follow the new one). The containers outlive a containerd
   * or kubelet restart (their shims keep running); etcd keeps its data directory.
   */
  restartProcess(
    name: 'containerd' | 'kubelet' | 'kube-proxy' | 'kube-apiserver' | 'etcd',
    signal?: NodeJS.Signals,
  ): Promise<number>;
  /**
   * Stops the node and restores the host. `graceful: false` (the test files, whose cluster is
   * thrown away) does not delete the pods through the API first: the kubelet is stopped and
   * containerd's tasks killed, and the same cleanup removes what their sandboxes left.
   */
  stop(opts?: StopOptions): Promise<StopReport>;
}

export interface StopOptions {
  /** Delete every pod through the API first, so the kubelet tears each sandbox down (default true). */
  graceful?: boolean;
}

const stateFile = (dir: string) => join(dir, 'node.json');
const defaultLog = (l: string) => process.stderr.write(`${l}\n`);

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}
function intToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** Parses an IPv4 CIDR for setting `field`; throws WEFT_NODE_SETTING naming the field. */
export function parseCidr(field: string, cidr: string, minBits: number, maxBits: number) {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  const bits = Number(m?.[5]);
  if (!m || m.slice(1, 5).some((o) => Number(o) > 255) || bits < minBits || bits > maxBits) {
    throw new NodeError(
      'WEFT_NODE_SETTING',
      `${field}: "${cidr}" is not an IPv4 range from /${minBits} to /${maxBits}; write it like 10.123.0.0/16`,
    );
  }
  const size = 2 ** (32 - bits);
  const base = ipv4ToInt(m.slice(1, 5).join('.'));
  if (base % size !== 0) {
    throw new NodeError(
      'WEFT_NODE_SETTING',
      `${field}: "${cidr}" has host bits set; use ${intToIpv4(base - (base % size))}/${bits}`,
    );
  }
  return { base, bits, size, nth: (n: number) => intToIpv4(base + n) };
}

/** Checks every setting, with an error naming the setting and the fix. */
export function resolveOptions(o: RealNodeOptions) {
  const name = o.name ?? 'weft-node';
  const bridge = o.bridge ?? 'weft0';
  const podCIDR = o.podCIDR ?? '10.123.0.0/16';
  const serviceCIDR = o.serviceCIDR ?? '10.124.0.0/16';
  const syncFrequency = o.syncFrequency ?? '1m';
  const maxPods = o.maxPods ?? 110;
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) || name.length > 63) {
    throw new NodeError(
      'WEFT_NODE_SETTING',
      `name: "${name}" is not a DNS label; use lowercase letters, digits and '-'`,
    );
  }
  if (!/^[a-zA-Z0-9_-]{1,15}$/.test(bridge)) {
    throw new NodeError(
      'WEFT_NODE_SETTING',
      `bridge: "${bridge}" is not an interface name; use 1 to 15 letters, digits, '-' or '_'`,
    );
  }
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(syncFrequency)) {
    throw new NodeError(
      'WEFT_NODE_SETTING',
      `syncFrequency: "${syncFrequency}" is not a duration; write it like 1m, 5s or 500ms`,
    );
  }
  if (!Number.isInteger(maxPods) || maxPods < 1 || maxPods > 1000) {
    throw new NodeError(
      'WEFT_NODE_SETTING',
      `maxPods: ${maxPods} is not a whole number from 1 to 1000; leave it out for the kubelet's 110`,
    );
  }
  const pods = parseCidr('podCIDR', podCIDR, 8, 24);
  const services = parseCidr('serviceCIDR', serviceCIDR, 12, 24);
  const overlap = pods.base < services.base + services.size && services.base < pods.base + pods.size;
  if (overlap) {
    throw new NodeError(
      'WEFT_NODE_SETTING',
      `podCIDR ${podCIDR} and serviceCIDR ${serviceCIDR} overlap; choose disjoint ranges`,
    );
  }
  return {
    name,
    bridge,
    podCIDR,
    serviceCIDR,
    syncFrequency,
    maxPods,
    gateway: pods.nth(1),
    prefix: pods.bits,
    dnsIP: services.nth(10),
  };
}

function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function stopPids(pids: number[], graceMs: number): Promise<void> {
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (pids.some(alive) && Date.now() < deadline) await sleep(100);
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  const hard = Date.now() + 5000;
  while (pids.some(alive) && Date.now() < hard) await sleep(50);
}

/** A kubelet client certificate the apiserver presents for exec, logs and port-forward. */
async function kubeletPki(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  mkdirSync(dir, { recursive: true });
  const now = new Date();
  const ca = await selfSignedCa({
    name: 'CN=weft-kubelet-ca',
    now,
    lifetimeMs: 365 * 86_400_000,
    pathLength: 0,
  });
  const caKey = await crypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(ca.keyPem), EC, false, [
    'sign',
  ]);
  const keys = await newKeyPair();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: 'O=system:masters, CN=kube-apiserver-kubelet-client',
    issuer: ca.cert.subject,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: ca.cert.notAfter,
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
    ],
  });
  const paths = {
    ca: join(dir, 'kubelet-ca.crt'),
    cert: join(dir, 'apiserver-kubelet-client.crt'),
    key: join(dir, 'apiserver-kubelet-client.key'),
  };
  writeFileSync(paths.ca, ca.certPem);
  writeFileSync(paths.cert, cert.toString('pem'));
  writeFileSync(paths.key, await exportPkcs8(keys.privateKey), { mode: 0o600 });
  return paths;
}

function containerdConfig(dir: string, cniConfDir: string): string {
  return `version = 2
root = "${dir}/root"
state = "${dir}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "${dir}/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "${dir}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  # The VM lacks CAP_SYS_RESOURCE: runc may only raise oom_score_adj (see docs/real-node.md).
  restrict_oom_score_adj = true
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${cniConfDir}"
    max_conf_num = 1
`;
}

function cniConfig(name: string, bridge: string, podCIDR: string, gateway: string, dataDir: string): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name,
      plugins: [
        {
          type: 'bridge',
          bridge,
          isGateway: true,
          ipMasq: true,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: podCIDR, gateway }]],
            routes: [{ dst: '0.0.0.0/0' }],
            dataDir,
          },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
}

function corednsManifests(dnsIP: string): string {
  const labels = { 'k8s-app': 'kube-dns', 'app.kubernetes.io/part-of': 'weft-node' };
  const ns = 'kube-system';
  const corefile = [
    '.:53 {',
    '    errors',
    '    health {',
    '        lameduck 5s',
    '    }',
    '    ready',
    '    kubernetes cluster.local in-addr.arpa ip6.arpa {',
    '        pods insecure',
    '        fallthrough in-addr.arpa ip6.arpa',
    '        ttl 30',
    '    }',
    '    forward . /etc/resolv.conf',
    '    cache 30',
    '    reload',
    '    loadbalance',
    '}',
    '',
  ].join('\n');
  const items = [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'coredns', namespace: ns, labels } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'system:coredns', labels },
      rules: [
        {
          apiGroups: [''],
          resources: ['endpoints', 'services', 'pods', 'namespaces'],
          verbs: ['list', 'watch'],
        },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'system:coredns', labels },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:coredns' },
      subjects: [{ kind: 'ServiceAccount', name: 'coredns', namespace: ns }],
    },
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'coredns', namespace: ns, labels },
      data: { Corefile: corefile },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'coredns', namespace: ns, labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: { 'k8s-app': 'kube-dns' } },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: 'coredns',
            priorityClassName: 'system-cluster-critical',
            dnsPolicy: 'Default',
            containers: [
              {
                name: 'coredns',
                image: COREDNS_IMAGE,
                imagePullPolicy: 'Never',
                args: ['-conf', '/etc/coredns/Corefile'],
                ports: [
                  { name: 'dns', containerPort: 53, protocol: 'UDP' },
                  { name: 'dns-tcp', containerPort: 53, protocol: 'TCP' },
                ],
                volumeMounts: [{ name: 'config', mountPath: '/etc/coredns', readOnly: true }],
                readinessProbe: { httpGet: { path: '/ready', port: 8181 }, periodSeconds: 2 },
                livenessProbe: {
                  httpGet: { path: '/health', port: 8080 },
                  periodSeconds: 10,
                  failureThreshold: 5,
                },
                securityContext: {
                  allowPrivilegeEscalation: false,
                  readOnlyRootFilesystem: true,
                  capabilities: { add: ['NET_BIND_SERVICE'], drop: ['ALL'] },
                },
              },
            ],
            volumes: [{ name: 'config', configMap: { name: 'coredns' } }],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kube-dns', namespace: ns, labels },
      spec: {
        clusterIP: dnsIP,
        selector: { 'k8s-app': 'kube-dns' },
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 },
          { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 53 },
        ],
      },
    },
  ];
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items });
}

/** Creates `cgroup` in every cgroup v1 hierarchy and the v2 one, as the kubelet's cgroupRoot. */
function createCgroupRoot(cgroup: string): void {
  for (const h of readdirSync('/sys/fs/cgroup')) {
    const p = join('/sys/fs/cgroup', h);
    if (!existsSync(join(p, 'cgroup.procs'))) continue;
    mkdirSync(join(p, cgroup), { recursive: true });
  }
}

/**
 * Kills what still runs in `cgroup` (containers whose containerd is gone) and removes it and
 * everything below it, deepest first. Returns the directories that could not be removed.
 */
/** The cgroup root's directories in every hierarchy that has it. */
function cgroupRoots(cgroup: string): string[] {
  return readdirSync('/sys/fs/cgroup')
    .map((h) => join('/sys/fs/cgroup', h, cgroup))
    .filter((p) => existsSync(p));
}

/** Visits `dir` and every directory under it, deepest first. */
function walkCgroup(dir: string, visit: (dir: string) => void): void {
  let entries: import('node:fs').Dirent[] = [];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return; // gone already
  }
  for (const e of entries) if (e.isDirectory()) walkCgroup(join(dir, e.name), visit);
  visit(dir);
}

/** Every process in the cgroup root (the pods' containers), in any hierarchy. */
function cgroupPids(cgroup: string): number[] {
  const pids = new Set<number>();
  for (const r of cgroupRoots(cgroup)) {
    walkCgroup(r, (d) => {
      try {
        for (const p of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean))
          pids.add(Number(p));
      } catch {}
    });
  }
  return [...pids];
}

export async function removeCgroupRoot(cgroup: string, timeoutMs = 10_000): Promise<string[]> {
  const roots = cgroupRoots(cgroup);
  // A process may still be exiting (or a runc init entering) when the directories go: retry.
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pids = cgroupPids(cgroup);
    if (pids.length) await stopPids(pids, 0);
    const failed: string[] = [];
    for (const r of roots) {
      walkCgroup(r, (d) => {
        try {
          rmdirSync(d);
        } catch {
          failed.push(d);
        }
      });
    }
    if (!failed.length || Date.now() > deadline) return failed;
    await sleep(200);
  }
}

function startProcess(
  state: NodeState,
  name: string,
  cmd: string,
  args: string[],
  detached: boolean,
): ChildProcess {
  const log = join(state.dir, `${name}.log`);
  const fd = openSync(log, 'a');
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], detached: true, cwd: state.dir });
  closeSync(fd);
  if (detached) child.unref();
  const entry = { name, pid: child.pid!, cmd, args };
  const i = state.pids.findIndex((p) => p.name === name);
  if (i >= 0) state.pids[i] = entry;
  else state.pids.push(entry);
  writeFileSync(stateFile(state.dir), JSON.stringify(state, null, 2));
  return child;
}

/** A control-plane process restarted with its command line (/proc) and its log appended to. */
async function restartControlPlaneProcess(
  state: NodeState,
  name: string,
  signal: NodeJS.Signals,
  detached: boolean,
): Promise<number> {
  const argv = (pid: number) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
    } catch {
      return [];
    }
  };
  const i = state.controlPlanePids.findIndex((pid) => argv(pid)[0]?.endsWith(`/${name}`));
  const pid = state.controlPlanePids[i];
  if (pid === undefined) throw new Error(`restartProcess: the control plane runs no process ${name}`);
  const [cmd, ...args] = argv(pid);
  process.kill(pid, signal);
  const deadline = Date.now() + 15_000;
  while (alive(pid) && Date.now() < deadline) await sleep(100);
  await stopPids([pid], 0);
  const fd = openSync(join(state.dir, 'control-plane', `${name}.log`), 'a');
  const child = spawn(cmd!, args, { stdio: ['ignore', fd, fd], detached: true });
  closeSync(fd);
  if (detached) child.unref();
  state.controlPlanePids[i] = child.pid!;
  writeFileSync(stateFile(state.dir), JSON.stringify(state, null, 2));
  return child.pid!;
}

async function restartProcess(
  state: NodeState,
  name: string,
  signal: NodeJS.Signals,
  detached: boolean,
): Promise<number> {
  if (name === 'kube-apiserver' || name === 'etcd')
    return restartControlPlaneProcess(state, name, signal, detached);
  const p = state.pids.find((x) => x.name === name);
  if (!p?.cmd || !p.args) throw new Error(`restartProcess: the node runs no process ${name}`);
  if (alive(p.pid)) process.kill(p.pid, signal);
  const deadline = Date.now() + 15_000;
  while (alive(p.pid) && Date.now() < deadline) await sleep(100);
  await stopPids([p.pid], 0);
  return startProcess(state, name, p.cmd, p.args, detached).pid!;
}

/** Starts the whole cluster; on failure everything started so far is undone. */
export async function startRealNode(opts: RealNodeOptions): Promise<RealNode> {
  const log = opts.log ?? defaultLog;
  const o = resolveOptions(opts);
  if (process.getuid?.() !== 0)
    throw new NodeError('WEFT_NODE_NOT_ROOT', 'the real node needs root (containerd, kubelet, iptables)');
  for (const [tool, pkg] of [
    ['containerd', 'containerd'],
    ['ctr', 'containerd'],
    ['runc', 'runc'],
    ['conntrack', 'conntrack'],
    ['iptables', 'iptables'],
    ['gcc', 'gcc'],
    ['nft', 'nftables'],
  ]) {
    try {
      sh('sh', ['-c', `command -v ${tool}`]);
    } catch {
      throw new NodeError(
        'WEFT_NODE_TOOL_MISSING',
        `${tool} not found: install the Debian package ${pkg} (hack/setup.sh does)`,
      );
    }
  }
  if (!existsSync('/usr/lib/cni/bridge')) {
    throw new NodeError(
      'WEFT_NODE_TOOL_MISSING',
      '/usr/lib/cni/bridge not found: install the Debian package containernetworking-plugins',
    );
  }
  if (existsSync(join('/sys/class/net', o.bridge))) {
    throw new NodeError(
      'WEFT_NODE_IN_USE',
      `bridge: interface ${o.bridge} exists already (another cluster?); stop it or choose another bridge`,
    );
  }
  const routes = sh('ip', ['-4', 'route', 'show', 'table', 'all']);
  for (const cidr of [o.podCIDR, o.serviceCIDR]) {
    if (routes.includes(`${cidr} `)) {
      throw new NodeError(
        'WEFT_NODE_IN_USE',
        `${cidr} is routed on this host already (another cluster?); choose another range`,
      );
    }
  }
  const t0 = Date.now();
  const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
  log('[node] building or finding the binaries (hack/build-control-plane.sh)');
  const bin = ensureBinaries(log, BINARIES);

  mkdirSync(opts.dir, { recursive: true });
  const chainsBefore: string[] = [];
  for (const save of IPTABLES_SAVE)
    for (const c of iptablesChains(iptablesRules(save))) chainsBefore.push(`${save} ${c}`);
  const state: NodeState = {
    dir: opts.dir,
    name: o.name,
    bridge: o.bridge,
    podCIDR: o.podCIDR,
    serviceCIDR: o.serviceCIDR,
    containerd: join(opts.dir, 'containerd', 'containerd.sock'),
    cgroupRoot: `weft-${o.bridge}`,
    bin,
    pids: [],
    controlPlanePids: [],
    sysctls: readSysctls(),
    chainsBefore,
    netnsBefore: existsSync('/run/netns') ? readdirSync('/run/netns') : [],
    created: FIXED_PATHS.filter((p) => !existsSync(p)),
  };
  writeFileSync(stateFile(opts.dir), JSON.stringify(state, null, 2));
  const stop = (so?: StopOptions) => stopRealNode(opts.dir, log, so);
  try {
    log(`[node] bridge ${o.bridge} with ${o.gateway}/${o.prefix}`);
    sh('ip', ['link', 'add', o.bridge, 'type', 'bridge']);
    sh('ip', ['addr', 'add', `${o.gateway}/${o.prefix}`, 'dev', o.bridge]);
    sh('ip', ['link', 'set', o.bridge, 'up']);

    // containerd
    const cdir = join(opts.dir, 'containerd');
    const cniConfDir = join(opts.dir, 'cni', 'net.d');
    mkdirSync(cniConfDir, { recursive: true });
    writeFileSync(join(cdir, '..', 'containerd.toml'), containerdConfig(cdir, cniConfDir));
    writeFileSync(
      join(cniConfDir, '10-weft.conflist'),
      cniConfig(`weft-${o.bridge}`, o.bridge, o.podCIDR, o.gateway, join(opts.dir, 'cni', 'ipam')),
    );
    mkdirSync(cdir, { recursive: true });
    const containerd = startProcess(
      state,
      'containerd',
      'containerd',
      ['--config', join(opts.dir, 'containerd.toml')],
      !!opts.detached,
    );
    await waitFor(
      'containerd',
      30_000,
      async () => {
        sh('ctr', ['--address', state.containerd, 'version']);
        return true;
      },
      containerd,
      join(opts.dir, 'containerd.log'),
    );
    log(`[node] containerd ready (${elapsed()})`);

    const imageDir = join(dirname(dirname(bin)), 'images');
    // Images `hack/image` built (dist/images/*.oci.tar: weft, weft-demo, pause). The sandbox
    // image containerd names (PAUSE_IMAGE) is always the one built here: hack/image's pause is
    // ghcr.io/weft-mesh/pause:<tag>, another reference, and without PAUSE_IMAGE no pod starts.
    const distDir = join(repoRoot, 'dist', 'images');
    const dist = existsSync(distDir) ? readdirSync(distDir).filter((f) => f.endsWith('.oci.tar')) : [];
    const archives = [
      ...dist.map((f) => join(distDir, f)),
      ensureImage(pauseImage(K8S_VERSION), imageDir, 'pause'),
      ensureImage(busyboxImage(), imageDir, 'busybox'),
      ensureImage(corednsImage(join(bin, 'coredns')), imageDir, 'coredns'),
    ];
    // Imported while the control plane starts (containerd needs nothing from it): 4 s of a
    // bring-up of 12 s when one followed the other.
    const imported = Promise.all(archives.map((a) => importImageAsync(state.containerd, a))).then(() =>
      log(`[node] imported ${archives.length} images (${elapsed()})`),
    );
    // Settled before anything can fail in between (no unhandled rejection); awaited below.
    imported.catch(() => {});

    const pki = await kubeletPki(join(opts.dir, 'pki'));
    const cp = await startControlPlane({
      dir: join(opts.dir, 'control-plane'),
      controllerManager: true,
      scheduler: true,
      detached: true,
      address: o.gateway,
      serviceCIDR: o.serviceCIDR,
      apiserverArgs: [
        `--kubelet-client-certificate=${pki.cert}`,
        `--kubelet-client-key=${pki.key}`,
        // The node's hostname may not resolve (or resolve to loopback): dial its InternalIP.
        '--kubelet-preferred-address-types=InternalIP',
      ],
      log,
    });
    state.controlPlanePids = cp.pids;
    state.kubeconfigPath = cp.kubeconfigPath;
    writeFileSync(stateFile(opts.dir), JSON.stringify(state, null, 2));

    await imported;

    // kubelet
    const kubeletDir = join(opts.dir, 'kubelet');
    mkdirSync(kubeletDir, { recursive: true });
    createCgroupRoot(state.cgroupRoot);
    const healthzPort = await freePort();
    writeFileSync(
      join(opts.dir, 'kubelet.json'),
      JSON.stringify(
        {
          apiVersion: 'kubelet.config.k8s.io/v1beta1',
          kind: 'KubeletConfiguration',
          cgroupDriver: 'cgroupfs',
          failCgroupV1: false,
          cgroupRoot: `/${state.cgroupRoot}`,
          containerRuntimeEndpoint: `unix://${state.containerd}`,
          address: o.gateway,
          port: 10250,
          readOnlyPort: 0,
          healthzBindAddress: '127.0.0.1',
          healthzPort,
          authentication: {
            anonymous: { enabled: false },
            webhook: { enabled: true },
            x509: { clientCAFile: pki.ca },
          },
          authorization: { mode: 'Webhook' },
          clusterDomain: 'cluster.local',
          clusterDNS: [o.dnsIP],
          syncFrequency: o.syncFrequency,
          maxPods: o.maxPods,
          failSwapOn: false,
          oomScoreAdj: 0,
          resolvConf: '/etc/resolv.conf',
          // A shared development machine: never evict for disk or memory, never collect the
          // imported images (nothing can pull them back).
          evictionHard: {
            'memory.available': '1Mi',
            'nodefs.available': '1%',
            'imagefs.available': '1%',
            'nodefs.inodesFree': '1%',
          },
          imageGCHighThresholdPercent: 100,
          imageGCLowThresholdPercent: 99,
          serializeImagePulls: false,
        },
        null,
        2,
      ),
    );
    const kubeletStart = Date.now();
    const kubelet = startProcess(
      state,
      'kubelet',
      join(bin, 'kubelet'),
      [
        `--config=${join(opts.dir, 'kubelet.json')}`,
        `--kubeconfig=${cp.kubeconfigPath}`,
        `--root-dir=${kubeletDir}`,
        `--hostname-override=${o.name}`,
        `--node-ip=${o.gateway}`,
        '--v=1',
      ],
      !!opts.detached,
    );
    const kc = cp.kubeConfig();
    const { CoreV1Api } = await import('@kubernetes/client-node');
    const core = kc.makeApiClient(CoreV1Api);
    await waitFor(
      `Node ${o.name} Ready`,
      120_000,
      async () => {
        const n = await core.readNode({ name: o.name });
        return n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
      },
      kubelet,
      join(opts.dir, 'kubelet.log'),
    );
    const nodeReadyMs = Date.now() - kubeletStart;
    log(`[node] Node ${o.name} Ready ${nodeReadyMs} ms after the kubelet started (${elapsed()})`);

    // kube-proxy
    writeFileSync(
      join(opts.dir, 'kube-proxy.json'),
      JSON.stringify(
        {
          apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
          kind: 'KubeProxyConfiguration',
          mode: 'iptables',
          clientConnection: { kubeconfig: cp.kubeconfigPath },
          hostnameOverride: o.name,
          bindAddress: o.gateway,
          healthzBindAddress: `127.0.0.1:${await freePort()}`,
          metricsBindAddress: `127.0.0.1:${await freePort()}`,
          clusterCIDR: o.podCIDR,
          nodePortAddresses: [`${o.gateway}/32`],
          oomScoreAdj: 0,
          // Leave the host's conntrack sysctls alone.
          conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
          // No NodePorts on 127.0.0.1, so route_localnet stays off.
          iptables: {
            localhostNodePorts: false,
            masqueradeAll: false,
            syncPeriod: '30s',
            minSyncPeriod: '1s',
          },
        },
        null,
        2,
      ),
    );
    const proxy = startProcess(
      state,
      'kube-proxy',
      join(bin, 'kube-proxy'),
      [`--config=${join(opts.dir, 'kube-proxy.json')}`, '--v=1'],
      !!opts.detached,
    );
    await waitFor(
      'kube-proxy',
      60_000,
      async () => sh('iptables-save', ['-t', 'nat']).includes('KUBE-SVC-NPX46M4PTMTKRN6Y'),
      proxy,
      join(opts.dir, 'kube-proxy.log'),
    );
    log(`[node] kube-proxy programs the Services (${elapsed()})`);

    // CoreDNS
    const kubectl = (args: string[], input?: string) =>
      sh(cp.kubectl, ['--kubeconfig', cp.kubeconfigPath, ...args], input);
    kubectl(['apply', '-f', '-'], corednsManifests(o.dnsIP));
    await waitFor(
      'CoreDNS',
      120_000,
      async () => {
        const pods = await core.listNamespacedPod({
          namespace: 'kube-system',
          labelSelector: 'k8s-app=kube-dns',
        });
        return pods.items.some((p) =>
          p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        );
      },
      undefined,
      join(opts.dir, 'kubelet.log'),
    );
    log(`[node] CoreDNS ready at ${o.dnsIP} (${elapsed()})`);
    log(`[node] cluster ready in ${elapsed()}: kubectl --kubeconfig ${cp.kubeconfigPath} get nodes`);
    return {
      dir: opts.dir,
      name: o.name,
      server: cp.server,
      kubeconfigPath: cp.kubeconfigPath,
      kubectl: cp.kubectl,
      containerd: state.containerd,
      importImage: (archivePath) => importImage(state.containerd, archivePath),
      get pids() {
        return [...state.controlPlanePids, ...state.pids.map((p) => p.pid)];
      },
      processes: state.pids,
      nodeReadyMs,
      restartProcess: (name, signal = 'SIGTERM') => restartProcess(state, name, signal, !!opts.detached),
      stop,
    };
  } catch (err) {
    log(`[node] start failed: ${(err as Error).message}; undoing what was started`);
    await stop();
    throw err;
  }
}

/** Imports an image archive into the real node whose state is in `dir` (npm run cluster:import). */
export function importIntoNode(dir: string, archivePath: string): void {
  if (!existsSync(stateFile(dir))) {
    throw new NodeError(
      'WEFT_NODE_SETTING',
      `no real node runs from ${dir}: start one with cluster:up --node real`,
    );
  }
  if (!existsSync(archivePath)) {
    throw new NodeError(
      'WEFT_NODE_SETTING',
      `archive: ${archivePath} does not exist; build it first (hack/image)`,
    );
  }
  importImage((JSON.parse(readFileSync(stateFile(dir), 'utf8')) as NodeState).containerd, archivePath);
}

/** Processes whose command line names containerd's socket: the shims it leaves running. */
function shimsOf(address: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    const pid = Number(e);
    if (!Number.isInteger(pid)) continue;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv[0]?.endsWith('containerd-shim-runc-v2') && argv.includes(address)) out.push(pid);
    } catch {}
  }
  return out;
}

const BUILTIN_CHAINS = new Set(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']);

/**
 * iptables-nft creates the nf_tables tables (ip filter, ip6 nat, …) on first use and never
 * deletes them: delete those that did not exist before start and hold no rule now (`nft`).
 */
function removeNewEmptyNftTables(chainsBefore: Set<string>): string[] {
  const tried: string[] = [];
  for (const [save, family] of [
    ['iptables-nft-save', 'ip'],
    ['ip6tables-nft-save', 'ip6'],
  ] as const) {
    const tables = new Map<string, boolean>(); // table -> empty
    let table = '';
    for (const line of iptablesRules(save).split('\n')) {
      if (line.startsWith('*')) {
        table = line.slice(1);
        tables.set(table, true);
      } else if (
        line.startsWith('-A ') ||
        (line.startsWith(':') && !BUILTIN_CHAINS.has(line.slice(1).split(' ')[0]!))
      )
        tables.set(table, false);
    }
    for (const [t, empty] of tables) {
      const existed = [...chainsBefore].some((c) => c.startsWith(`${save} ${t}/`));
      if (empty && !existed) {
        tried.push(`${family} ${t}`);
        try {
          sh('nft', ['delete', 'table', family, t]);
        } catch {}
      }
    }
  }
  // What is still there (a failed delete; or someone else's, created in the meantime).
  const now = sh('nft', ['list', 'tables']);
  return tried.filter((t) => now.includes(`table ${t}\n`));
}

/** Mount points under `paths` (any mount namespace), deepest first. */
function mountsUnder(paths: string[]): string[] {
  return [...allMountPoints()]
    .filter((m) => paths.some((p) => m === p || m.startsWith(`${p}/`)))
    .sort((a, b) => b.length - a.length);
}

/**
 * Stops the cluster whose state is in `dir` (this process's or another's: npm run cluster:down)
 * and restores the host: deletes the pods through the API (so the kubelet tears their sandboxes
 * down through CNI), stops kube-proxy and the kubelet, kills and deletes what containerd still
 * runs, stops containerd, its shims and the control plane, then removes mounts, network
 * namespaces, iptables chains, the bridge, cgroups and the fixed paths it created, and restores
 * the sysctls. Safe to call on a half-started cluster.
 */
export interface StopReport {
  /** nf_tables tables ("ip nat") the cluster created and left empty that could not be deleted. */
  nftTablesLeft: string[];
}

export async function stopRealNode(
  dir: string,
  log: (line: string) => void = defaultLog,
  opts: StopOptions = {},
): Promise<StopReport> {
  if (!existsSync(stateFile(dir))) return { nftTablesLeft: [] };
  const s = JSON.parse(readFileSync(stateFile(dir), 'utf8')) as NodeState;
  const t0 = Date.now();
  const pidOf = (name: string) => s.pids.find((p) => p.name === name)?.pid;
  const kubectlBin = join(s.bin, 'kubectl');
  const kubectl = (args: string[]) =>
    sh(kubectlBin, ['--kubeconfig', s.kubeconfigPath ?? '', '--request-timeout=10s', ...args]);
  const kubeletPid = pidOf('kubelet');
  const containerdPid = pidOf('containerd');
  if (opts.graceful === false) log('[node] stopping without deleting the pods (their containers are killed)');
  else if (s.kubeconfigPath && kubeletPid && alive(kubeletPid) && s.controlPlanePids.every(alive)) {
    log('[node] deleting every workload and pod (the kubelet stops their sandboxes)');
    try {
      kubectl([
        'delete',
        'deployments,replicasets,daemonsets,statefulsets,jobs,cronjobs',
        '--all',
        '-A',
        '--wait=false',
      ]);
      kubectl(['delete', 'pods', '--all', '-A', '--grace-period=1', '--wait=false']);
      // Only a running kubelet (with its containerd) finishes the deletions.
      const working = () => alive(kubeletPid) && containerdPid !== undefined && alive(containerdPid);
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline && working() && kubectl(['get', 'pods', '-A', '-o', 'name']).trim() !== '')
        await sleep(500);
    } catch (err) {
      log(
        `[node] could not delete the pods through the API (${(err as Error).message.split('\n')[0]}); killing them`,
      );
    }
  }
  const step = (what: string) => log(`[node] ${what} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  step('pods gone');
  const nodePids = (names: string[]) => names.map(pidOf).filter((p): p is number => p !== undefined);
  await stopPids(nodePids(['kube-proxy', 'kubelet']), 15_000);
  if (containerdPid && alive(containerdPid)) {
    const ctr = (args: string[]) => sh('ctr', ['--address', s.containerd, '-n', 'k8s.io', ...args]);
    try {
      // Without the graceful deletion every pod still runs: their processes are killed at once
      // through the cgroup root (one signal each, not a `ctr` call per task).
      if (opts.graceful === false) await stopPids(cgroupPids(s.cgroupRoot), 0);
      // Every task killed first, then each deleted once it has exited. containerd's CRI plugin
      // deletes a task itself when it sees it exit: "not found" is done (retrying it cost 10 s
      // per task, minutes for a cluster whose pods were not deleted first).
      const tasks = ctr(['tasks', 'ls', '-q']).split('\n').filter(Boolean);
      for (const id of tasks) {
        try {
          ctr(['tasks', 'kill', '-s', 'SIGKILL', id]);
        } catch {}
      }
      for (const id of tasks) {
        for (let i = 0; i < 50; i++) {
          try {
            ctr(['tasks', 'delete', id]);
            break;
          } catch (err) {
            if (/not found/.test(String((err as { stderr?: string }).stderr ?? ''))) break;
            await sleep(100);
          }
        }
      }
      for (const id of ctr(['containers', 'ls', '-q']).split('\n').filter(Boolean)) {
        try {
          ctr(['containers', 'delete', id]);
        } catch {}
      }
    } catch (err) {
      log(`[node] containerd cleanup: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  if (existsSync(join(s.bin, 'kube-proxy'))) {
    try {
      sh(join(s.bin, 'kube-proxy'), ['--cleanup', '--v=0']);
    } catch {}
  }
  step('kubelet and kube-proxy stopped, containers deleted');
  await stopPids(nodePids(['containerd']), 15_000);
  await stopPids(shimsOf(s.containerd), 5_000);
  // Containers whose containerd died before it could stop them.
  const stuck = await removeCgroupRoot(s.cgroupRoot);
  if (stuck.length) log(`[node] cgroups still in use: ${stuck.join(', ')}`);
  // The cluster's data is thrown away: no need to wait for the apiserver's graceful shutdown,
  // which waits up to a minute for requests in flight.
  await stopPids([...s.controlPlanePids].reverse(), 3_000);
  step('containerd and the control plane stopped');

  // Mounts (overlay rootfs, shm, volume tmpfs) and network namespaces left by killed sandboxes.
  const netnsDir = '/run/netns';
  const newNetns = existsSync(netnsDir)
    ? readdirSync(netnsDir).filter((n) => n.startsWith('cni-') && !s.netnsBefore.includes(n))
    : [];
  const mounts = mountsUnder([dir, ...newNetns.map((n) => join(netnsDir, n))]);
  for (const m of mounts) {
    try {
      sh('umount', [m]);
    } catch {
      try {
        sh('umount', ['-l', m]);
      } catch {}
    }
  }
  for (const n of newNetns) rmSync(join(netnsDir, n), { force: true });

  // iptables chains of the kubelet, kube-proxy and the bridge plugin (KUBE-*, CNI-*) that did not
  // exist before, and the rules jumping to them; other chains (other tools' such as WEFT-LN-*, tests'
  // own) stay, even when they appeared while the cluster ran.
  const before = new Set(s.chainsBefore);
  for (const save of IPTABLES_SAVE) {
    const rules = iptablesRules(save);
    if (!rules) continue;
    const ours = [...iptablesChains(rules)].filter(
      (c) => !before.has(`${save} ${c}`) && /^(KUBE|CNI)-/.test(c.slice(c.indexOf('/') + 1)),
    );
    if (!ours.length) continue;
    const script: string[] = [];
    let table = '';
    const ourChains = (t: string) =>
      ours.filter((c) => c.startsWith(`${t}/`)).map((c) => c.slice(t.length + 1));
    const tables = [...new Set(ours.map((c) => c.split('/')[0]!))];
    for (const t of tables) {
      script.push(`*${t}`);
      const chains = ourChains(t);
      for (const line of rules.split('\n')) {
        if (line.startsWith('*')) table = line.slice(1);
        if (table !== t || !line.startsWith('-A ')) continue;
        const [, chain] = line.split(' ');
        const target = /-[jg] (\S+)/.exec(line)?.[1];
        if (!chains.includes(chain!) && target && chains.includes(target))
          script.push(line.replace(/^-A /, '-D '));
      }
      for (const c of chains) script.push(`-F ${c}`);
      for (const c of chains) script.push(`-X ${c}`);
      script.push('COMMIT');
    }
    try {
      sh(save.replace('-save', '-restore'), ['--noflush'], `${script.join('\n')}\n`);
    } catch (err) {
      log(
        `[node] could not remove the iptables chains ${ours.join(', ')} (${save}): ${(err as Error).message}`,
      );
    }
  }
  const nftTablesLeft = removeNewEmptyNftTables(before);
  if (nftTablesLeft.length) log(`[node] could not delete the nf_tables tables ${nftTablesLeft.join(', ')}`);
  if (existsSync(join('/sys/class/net', s.bridge))) {
    // The pods' host-side veths still on the bridge: a stop without graceful deletion (no CNI DEL)
    // leaves each until the kernel destroys its pod's network namespace, which it does later and
    // asynchronously (conformance's leftovers check once found one). Deleted here, both ends go.
    const ports = join('/sys/class/net', s.bridge, 'brif');
    for (const port of existsSync(ports) ? readdirSync(ports) : []) {
      try {
        sh('ip', ['link', 'delete', port]);
      } catch {} // gone meanwhile
    }
    sh('ip', ['link', 'delete', s.bridge]);
  }
  const restored = restoreSysctls(s.sysctls);
  if (restored.length) log(`[node] restored ${restored.join(', ')}`);
  for (const p of s.created) {
    if (mountsUnder([p]).length === 0) rmSync(p, { recursive: true, force: true });
  }
  rmSync(dir, { recursive: true, force: true });
  log(`[node] stopped and cleaned up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return { nftTablesLeft };
}
