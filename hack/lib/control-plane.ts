// A real Kubernetes control plane for tests and local use: etcd, kube-apiserver and, when
// asked, kube-controller-manager, built from source by hack/build-control-plane.sh and
// started on free loopback ports with a generated admin kubeconfig. stop() ends every
// process and removes the working directory.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { CodedError } from '../../api/errors.ts';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ControlPlaneOptions {
  /** Also run kube-controller-manager (EndpointSlices, namespaces, service accounts, GC). */
  controllerManager?: boolean;
  /** Keep the processes running after this process exits (npm run cluster:up). */
  detached?: boolean;
  /** Working directory; default: a fresh one under the OS temp dir. */
  dir?: string;
  /** Progress lines; default: stderr. */
  log?: (line: string) => void;
  /** Also run kube-scheduler (the real node, hack/node). */
  scheduler?: boolean;
  /**
   * Address the apiserver binds and advertises (the `kubernetes` Service's endpoint); default
   * 127.0.0.1. The real node uses its bridge address, which its pods can reach.
   */
  address?: string;
  /** Service ClusterIP range; default 10.96.0.0/16. */
  serviceCIDR?: string;
  /** More kube-apiserver flags (the real node's kubelet client certificate). */
  apiserverArgs?: string[];
}

export interface ControlPlane {
  dir: string;
  server: string;
  kubeconfigPath: string;
  token: string;
  pids: number[];
  /** A client-node KubeConfig for the admin user. */
  kubeConfig(): KubeConfig;
  /** Path of the built kubectl, for tests and the demo. */
  kubectl: string;
  stop(): Promise<void>;
}

export class ControlPlaneError extends CodedError {}

/** Builds the binaries when missing (progress on stderr) and returns their directory. */
export function ensureBinaries(
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
  needed = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl'],
): string {
  const script = join(repoRoot, 'hack', 'build-control-plane.sh');
  const bin = execFileSync('bash', [script, '--print'], { encoding: 'utf8' }).trim();
  if (needed.every((b) => existsSync(join(bin, b)))) return bin;
  log('[control-plane] binaries missing: building them (a cold build takes about 4 minutes)');
  execFileSync('bash', [script], { stdio: ['ignore', 'ignore', 'inherit'] });
  return bin;
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** GET url over https; true when it answers 200. */
async function httpsOk(url: string, options: import('node:https').RequestOptions): Promise<boolean> {
  const { default: https } = await import('node:https');
  return new Promise<boolean>((resolve) => {
    const req = https.get(url, { timeout: 2000, ...options }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function waitFor(
  what: string,
  timeoutMs: number,
  probe: () => Promise<boolean>,
  proc?: ChildProcess,
  logFile?: string,
) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc && proc.exitCode !== null) {
      const tail =
        logFile && existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '';
      throw new ControlPlaneError(
        'WEFT_CP_EXITED',
        `${what} exited with code ${proc.exitCode}; last log lines:\n${tail}`,
      );
    }
    try {
      if (await probe()) return;
    } catch {}
    await sleep(200);
  }
  throw new ControlPlaneError(
    'WEFT_CP_TIMEOUT',
    `${what} did not become ready within ${timeoutMs} ms (logs in ${logFile ?? '?'})`,
  );
}

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const bin = ensureBinaries(
    log,
    opts.scheduler
      ? ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl']
      : undefined,
  );
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'weft-cp-'));
  mkdirSync(dir, { recursive: true });
  const procs: ChildProcess[] = [];
  const t0 = Date.now();

  const start = (name: string, args: string[]): ChildProcess => {
    const logFile = join(dir, `${name}.log`);
    const fd = openSync(logFile, 'a');
    const p = spawn(join(bin, name), args, { stdio: ['ignore', fd, fd], detached: opts.detached ?? false });
    closeSync(fd);
    if (opts.detached) p.unref();
    procs.push(p);
    return p;
  };

  const stop = async () => {
    for (const p of [...procs].reverse()) {
      if (p.exitCode === null && p.pid) {
        try {
          p.kill('SIGTERM');
        } catch {}
      }
    }
    const deadline = Date.now() + 10_000;
    for (const p of procs) {
      while (p.exitCode === null && p.signalCode === null && Date.now() < deadline) await sleep(50);
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const onExit = () => {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  if (!opts.detached) process.once('exit', onExit);

  try {
    // etcd
    const etcdClient = await freePort();
    const etcdPeer = await freePort();
    const etcd = start('etcd', [
      '--name=weft',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=weft=http://127.0.0.1:${etcdPeer}`,
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ]);
    await waitFor(
      'etcd',
      30_000,
      async () => (await fetch(`http://127.0.0.1:${etcdClient}/health`)).ok,
      etcd,
      join(dir, 'etcd.log'),
    );
    log(`[control-plane] etcd ready on 127.0.0.1:${etcdClient} (${Date.now() - t0} ms)`);

    // kube-apiserver
    const token = randomBytes(24).toString('hex');
    writeFileSync(join(dir, 'tokens.csv'), `${token},weft-admin,weft-admin,system:masters\n`, {
      mode: 0o600,
    });
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(join(dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(join(dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    const address = opts.address ?? '127.0.0.1';
    const serviceCIDR = opts.serviceCIDR ?? '10.96.0.0/16';
    const apiPort = await freePort(address);
    const server = `https://${address}:${apiPort}`;
    const certDir = join(dir, 'pki');
    const apiserver = start('kube-apiserver', [
      `--etcd-servers=http://127.0.0.1:${etcdClient}`,
      `--bind-address=${address}`,
      `--advertise-address=${address}`,
      `--secure-port=${apiPort}`,
      `--cert-dir=${certDir}`,
      `--token-auth-file=${join(dir, 'tokens.csv')}`,
      '--authorization-mode=RBAC',
      `--service-cluster-ip-range=${serviceCIDR}`,
      '--allow-privileged=true',
      `--service-account-key-file=${join(dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      '--api-audiences=https://kubernetes.default.svc.cluster.local',
      // Without the controller-manager no one creates the default ServiceAccount.
      ...(opts.controllerManager ? [] : ['--disable-admission-plugins=ServiceAccount']),
      '--enable-priority-and-fairness=false',
      '--profiling=false',
      '--v=1',
      ...(opts.apiserverArgs ?? []),
    ]);
    const kubeconfigPath = join(dir, 'kubeconfig');
    const writeKubeconfig = () => {
      const ca = readFileSync(join(certDir, 'apiserver.crt')).toString('base64');
      writeFileSync(
        kubeconfigPath,
        [
          'apiVersion: v1',
          'kind: Config',
          'clusters:',
          '- name: weft',
          '  cluster:',
          `    server: ${server}`,
          `    certificate-authority-data: ${ca}`,
          'users:',
          '- name: weft-admin',
          '  user:',
          `    token: ${token}`,
          'contexts:',
          '- name: weft',
          '  context: {cluster: weft, user: weft-admin}',
          'current-context: weft',
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
    };
    await waitFor(
      'kube-apiserver certificate',
      60_000,
      async () => existsSync(join(certDir, 'apiserver.crt')),
      apiserver,
      join(dir, 'kube-apiserver.log'),
    );
    writeKubeconfig();
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfigPath);
    await waitFor(
      'kube-apiserver',
      90_000,
      async () => {
        const cluster = kc.getCurrentCluster()!;
        return httpsOk(`${cluster.server}/readyz`, {
          ca: Buffer.from(cluster.caData!, 'base64'),
          headers: { authorization: `Bearer ${token}` },
        });
      },
      apiserver,
      join(dir, 'kube-apiserver.log'),
    );
    log(`[control-plane] kube-apiserver ready at ${server} (${Date.now() - t0} ms)`);

    // kube-controller-manager and kube-scheduler: the admin kubeconfig, a secure port on loopback
    // whose /healthz says when they are up.
    const startController = async (name: string, args: string[]) => {
      const port = await freePort();
      const p = start(name, [
        `--kubeconfig=${kubeconfigPath}`,
        `--authentication-kubeconfig=${kubeconfigPath}`,
        `--authorization-kubeconfig=${kubeconfigPath}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${port}`,
        '--leader-elect=false',
        '--v=1',
        ...args,
      ]);
      await waitFor(
        name,
        60_000,
        async () => httpsOk(`https://127.0.0.1:${port}/healthz`, { rejectUnauthorized: false }),
        p,
        join(dir, `${name}.log`),
      );
      log(`[control-plane] ${name} ready (${Date.now() - t0} ms)`);
    };
    if (opts.controllerManager) {
      await startController('kube-controller-manager', [
        `--cert-dir=${join(dir, 'pki-cm')}`,
        `--service-account-private-key-file=${join(dir, 'sa.key')}`,
        `--root-ca-file=${join(certDir, 'apiserver.crt')}`,
        '--use-service-account-credentials=false',
        `--service-cluster-ip-range=${serviceCIDR}`,
        '--concurrent-service-endpoint-syncs=5',
      ]);
    }
    if (opts.scheduler) await startController('kube-scheduler', []);

    return {
      dir,
      server,
      kubeconfigPath,
      token,
      pids: procs.map((p) => p.pid!),
      kubectl: join(bin, 'kubectl'),
      kubeConfig() {
        const k = new KubeConfig();
        k.loadFromFile(kubeconfigPath);
        return k;
      },
      stop: async () => {
        process.removeListener('exit', onExit);
        await stop();
      },
    };
  } catch (err) {
    await stop();
    process.removeListener('exit', onExit);
    throw err;
  }
}
