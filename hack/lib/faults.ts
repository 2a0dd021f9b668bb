// Faults under steady traffic, on a real cluster with Weft installed (bench/faults.ts, the e2e
// suites; docs/reliability.md): a backend Deployment `echo` (the demo server, two replicas by
// default) behind a Service with three ports (HTTP/1.1, gRPC over h2c, opaque TCP), a meshed
// client pod whose containers call it, one protocol each, every `intervalMs`
// (hack/demo-apps/client.ts, 2 s timeout, one line per answer), and scenarios, each a function
// that injects one fault and returns once the cluster recovered. `underFault` counts the
// clients' answers from the fault's start until a few seconds after it ended (the container
// runtime's timestamps of the clients' lines), per protocol and in all, and names every failure:
// its time, its protocol, what the client saw, and the fault that was active. Scenarios that
// touch processes need the host (`node`).
import { execFileSync, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PROXY } from '../../api/constants.ts';
import { WEFT_IMAGE } from '../../api/mesh.ts';
import { helmBinary } from '../install.ts';
import type { RealNode } from '../node/index.ts';
import type { Baseline } from './baseline.ts';
import { repoRoot } from './cluster.ts';
import { DEMO_IMAGE, demoServerContainer } from './demo-pod.ts';
import { eventually } from './eventually.ts';
import { replaceWeftCa } from './mtlsfixture.ts';
import { metricSum } from './netns.ts';
import { bundleVerifies, caDue, servedCertificate, servingCertDue } from './webhookcerts.ts';

export { DEMO_IMAGE };

const WEFT_NAMESPACE = 'weft-system';
/** How long after a flood the backends' sidecar memory is read again (what they gave back). */
const GIVEN_BACK_MS = 60_000;

export interface FaultContext {
  kubectl: string;
  kubeconfig: string;
  /** The meshed namespace of the backend and the client. */
  namespace: string;
  /** A ServiceAccount of the namespace for the backend and the client. */
  serviceAccount: string;
  /** The real node, for the faults that signal or restart processes; absent on another cluster. */
  node?: RealNode;
  log?: (line: string) => void;
}

/** The steady clients' protocols, one container of the client pod each. */
export const PROTOCOLS = ['http', 'grpc', 'tcp'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/**
 * WEFT_FAULTS_PROTOCOLS (comma-separated, default all three): the steady clients bench/faults.ts
 * and the e2e short suite start, e.g. `http` to compare with the HTTP/1.1-only harness.
 */
export function protocolsFromEnv(value = process.env.WEFT_FAULTS_PROTOCOLS): Protocol[] {
  if (!value) return [...PROTOCOLS];
  const picked = value.split(',').map((p) => p.trim());
  for (const p of picked)
    if (!(PROTOCOLS as readonly string[]).includes(p))
      throw new Error(
        `WEFT_FAULTS_PROTOCOLS=${value}: "${p}" is none of ${PROTOCOLS.join(', ')} (e.g. http,grpc)`,
      );
  return picked as Protocol[];
}

/**
 * Per protocol: the client's container, the URL it calls (a port of the echo Service) and the
 * status column of an answer that went well (hack/demo-apps/client.ts prints them).
 */
const CLIENTS: Record<Protocol, { container: string; url: string; ok: string }> = {
  http: { container: 'app', url: 'http://echo:8080/', ok: '200' },
  grpc: { container: 'grpc', url: 'http://echo:9090', ok: 'grpc-0' },
  tcp: { container: 'tcp', url: 'tcp://echo:9000', ok: 'ok' },
};

/** One answer of a steady client: when its line was written, the line, and its protocol. */
export interface Answer {
  at: number;
  /**
   * "<n> <status> <service> <version> <pod> <ms>ms" (status 200, grpc-0 or ok when it went well),
   * "<n> <status> <what came back> <ms>ms" or "<n> error <message>".
   */
  line: string;
  ok: boolean;
  protocol: Protocol;
}

/** A client's line as an answer (`at`: the runtime's timestamp of the line). */
export function answerOf(protocol: Protocol, at: number, line: string): Answer {
  return { at, line, ok: line.split(' ')[1] === CLIENTS[protocol].ok, protocol };
}

/** The pod that gave a successful answer. */
export const answeredBy = (a: Answer): string => a.line.split(' ')[4]!;

export interface ScenarioResult {
  name: string;
  requests: number;
  failed: number;
  /** Failures the scenario must cause (e.g. 503 "no ready endpoints" while scaled to zero). */
  expectedFailed: number;
  /** Each failure: "+<s>s <what the client saw>". */
  failures: string[];
  failuresByReason: Record<string, number>;
  /** Longest span from a failed request to the next successful one (0 when none failed). */
  maxRecoverySeconds: number;
  /** The same window per protocol of the clients (`requests` and `failed` are their sums). */
  byProtocol: Partial<Record<Protocol, { requests: number; failed: number; maxRecoverySeconds: number }>>;
  durationSeconds: number;
  /** Pods that answered during the scenario. */
  servedBy: string[];
  notes: string;
}

/** A failed answer's reason: status (or "error") and message, without the request number and latency. */
const lineReason = (line: string): string => {
  const [, status, ...rest] = line.replace(/ \d+ms$/, '').split(' ');
  return status === 'error'
    ? `error ${rest.join(' ').slice(0, 80)}`
    : `${status} ${rest.join(' ').slice(0, 80)}`;
};

/** What `tally` counts of a window of answers. */
type Tally = Pick<
  ScenarioResult,
  | 'requests'
  | 'failed'
  | 'expectedFailed'
  | 'failures'
  | 'failuresByReason'
  | 'maxRecoverySeconds'
  | 'byProtocol'
  | 'servedBy'
>;

/**
 * A call cut because the process it was in flight through was killed (tested on "<protocol>
 * <line>"): an HTTP request or gRPC stream reset (`502 WEFT_UPSTREAM_RESET`, or the gRPC
 * stream reset once its answer began: `ERR_HTTP2_STREAM_ERROR`), a TCP connection closed or reset
 * before its echo. Nothing tells whether the app had it, so it is not sent again.
 */
export const IN_FLIGHT_CUT =
  /^(http \d+ 502 WEFT_UPSTREAM_RESET|grpc \d+ (502 WEFT_UPSTREAM_RESET|error \S*ERR_HTTP2_STREAM_ERROR)|tcp \d+ error (closed before an answer|\S*ECONNRESET))/;

/** Whether a failure as `tally` names it ("+<s>s <protocol> <line>") is IN_FLIGHT_CUT. */
export const isInFlightCut = (failure: string): boolean =>
  IN_FLIGHT_CUT.test(failure.replace(/^\+[\d.]+s /, ''));

/**
 * The failures a crash of the process calls go through must cause: the one call in flight per
 * protocol (IN_FLIGHT_CUT), no more. A predicate for `tally`'s `expected` (stateful: one per run).
 */
export function inFlightCut(): (a: Answer) => boolean {
  const seen = new Set<Protocol>();
  return (a) => {
    if (seen.has(a.protocol) || !IN_FLIGHT_CUT.test(`${a.protocol} ${a.line}`)) return false;
    seen.add(a.protocol);
    return true;
  };
}

/**
 * Counts the answers written from `t0` to `t1`, per protocol and in all: each failure named
 * "+<s since t0>s <protocol> <line>", its reason counted as "<protocol> <status> <message>", the
 * ones matching `expected` (tested on "<protocol> <line>") counted apart, and the longest span
 * from a failure to the protocol's next success (to `t1` when none came).
 */
export function tally(
  answers: Answer[],
  t0: number,
  t1: number,
  expected?: RegExp | ((a: Answer) => boolean),
): Tally {
  const isExpected =
    typeof expected === 'function' ? expected : (a: Answer) => !!expected?.test(`${a.protocol} ${a.line}`);
  const window = answers.filter((a) => a.at >= t0 && a.at <= t1).sort((a, b) => a.at - b.at);
  const failed = window.filter((a) => !a.ok);
  const seconds = (ms: number) => Math.round(ms / 100) / 10;
  const byProtocol: Tally['byProtocol'] = {};
  for (const protocol of PROTOCOLS) {
    const mine = window.filter((a) => a.protocol === protocol);
    if (!mine.length && !answers.some((a) => a.protocol === protocol)) continue;
    let maxRecovery = 0;
    let firstFailed: number | undefined;
    for (const a of mine) {
      if (!a.ok) firstFailed ??= a.at;
      else if (firstFailed !== undefined) {
        maxRecovery = Math.max(maxRecovery, a.at - firstFailed);
        firstFailed = undefined;
      }
    }
    if (firstFailed !== undefined) maxRecovery = Math.max(maxRecovery, t1 - firstFailed);
    byProtocol[protocol] = {
      requests: mine.length,
      failed: mine.filter((a) => !a.ok).length,
      maxRecoverySeconds: seconds(maxRecovery),
    };
  }
  const failuresByReason: Record<string, number> = {};
  for (const a of failed) {
    const reason = `${a.protocol} ${lineReason(a.line)}`;
    failuresByReason[reason] = (failuresByReason[reason] ?? 0) + 1;
  }
  return {
    requests: window.length,
    failed: failed.length,
    expectedFailed: failed.filter(isExpected).length,
    failures: failed.map((a) => `+${((a.at - t0) / 1000).toFixed(1)}s ${a.protocol} ${a.line}`),
    failuresByReason,
    maxRecoverySeconds: Math.max(0, ...Object.values(byProtocol).map((c) => c.maxRecoverySeconds)),
    byProtocol,
    servedBy: [...new Set(window.filter((a) => a.ok).map(answeredBy))].sort(),
  };
}

export class Faults {
  readonly c: FaultContext;
  readonly ns: string;
  readonly log: (line: string) => void;
  constructor(c: FaultContext) {
    this.c = c;
    this.ns = c.namespace;
    this.log = c.log ?? ((l) => process.stderr.write(`${l}\n`));
  }

  // maxBuffer: the client's whole log is read (a 30-minute soak writes ~3 MB of it; the default
  // 1 MiB made every read fail, so the soak never saw an answer after its window).
  kubectl = (...args: string[]): string =>
    execFileSync(this.c.kubectl, ['--kubeconfig', this.c.kubeconfig, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 256 * 1024 * 1024,
    });
  apply = (obj: object): string =>
    execFileSync(this.c.kubectl, ['--kubeconfig', this.c.kubeconfig, 'apply', '-f', '-'], {
      input: JSON.stringify(obj),
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  json = (...args: string[]) => JSON.parse(this.kubectl(...args, '-o', 'json'));

  private get node(): RealNode {
    if (!this.c.node) throw new Error('this fault needs the real node (processes on the host)');
    return this.c.node;
  }

  /** Ready pods of the backend, not being deleted. */
  backends(): PodJson[] {
    return (this.json('get', 'pods', '-n', this.ns, '-l', 'app=echo').items as PodJson[]).filter(
      (p) =>
        !p.metadata.deletionTimestamp &&
        p.status.conditions?.some((x) => x.type === 'Ready' && x.status === 'True'),
    );
  }

  async available(replicas: number, timeoutMs = 180_000): Promise<void> {
    await eventually(
      `deployment echo: ${replicas} replicas available`,
      () => {
        const d = this.json('get', 'deployment', 'echo', '-n', this.ns);
        return d.status.updatedReplicas === replicas &&
          d.status.availableReplicas === replicas &&
          (d.status.replicas ?? 0) === replicas &&
          this.backends().length === replicas
          ? true
          : undefined;
      },
      { timeoutMs, intervalMs: 500 },
    );
  }

  /** The backend: Service echo:8080 and Deployment echo (the demo server). */
  async deployEcho(replicas = 2): Promise<void> {
    const labels = { app: 'echo' };
    this.apply({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'echo', namespace: this.ns },
      spec: {
        selector: labels,
        // gRPC: no appProtocol, so the callers' sidecars detect HTTP/2 from the h2c preface (as
        // for the many Services that name ports only); the backends' read the port's name.
        // TCP: appProtocol tcp, opaque to Weft (docs/proxy.md "Protocols").
        ports: [
          { name: 'http', port: 8080, targetPort: 8080, appProtocol: 'http' },
          { name: 'grpc', port: 9090, targetPort: 9090 },
          { name: 'tcp', port: 9000, targetPort: 9000, appProtocol: 'tcp' },
        ],
      },
    });
    this.apply({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'echo', namespace: this.ns },
      spec: {
        replicas,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: this.c.serviceAccount,
            containers: [demoServerContainer('echo', { GRPC_PORT: '9090', TCP_PORT: '9000' })],
          },
        },
      },
    });
    await this.available(replicas);
  }

  /**
   * The meshed client pod `name`, a container per protocol calling echo every `intervalMs` until
   * deleted (HTTP/1.1 http://echo:8080/, gRPC to echo:9090, TCP to echo:9000); returns once
   * every backend replica answered the first and the others answered (before that its sidecar
   * may not have the endpoints yet).
   */
  async startClient(
    name = 'steady',
    intervalMs = 50,
    protocols: readonly Protocol[] = PROTOCOLS,
  ): Promise<void> {
    this.client = name;
    this.protocols = protocols;
    this.apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: this.ns, labels: { app: name } },
      spec: {
        serviceAccountName: this.c.serviceAccount,
        restartPolicy: 'Never',
        terminationGracePeriodSeconds: 1,
        containers: protocols.map((protocol) => ({
          name: CLIENTS[protocol].container,
          image: DEMO_IMAGE,
          command: ['node', 'hack/demo-apps/client.ts', CLIENTS[protocol].url],
          env: [
            { name: 'INTERVAL_MS', value: String(intervalMs) },
            { name: 'PROTOCOL', value: protocol },
          ],
        })),
      },
    });
    // Every replica answered one protocol (the first: HTTP/1.1 unless left out), so the one
    // sidecar has the endpoints; the others answered once. (Waiting for every replica on each
    // took about 100 s on the real node: the balancer keeps to the faster endpoint while the
    // other's latency estimate decays.)
    const want = new Set(this.backends().map((p) => p.metadata.name));
    await eventually(
      `${name}: answers from the echo replicas ${[...want].join(', ')} over ${protocols[0]}, and over ${protocols.join(', ')}`,
      () => {
        const [first, ...others] = protocols.map((protocol) => this.answers(protocol).filter((a) => a.ok));
        const pods = new Set(first?.map(answeredBy));
        return [...want].every((p) => pods.has(p)) && others.every((a) => a.length > 0) ? true : undefined;
      },
      { timeoutMs: 180_000, intervalMs: 500 },
    );
  }
  private client = 'steady';
  private protocols: readonly Protocol[] = PROTOCOLS;

  stopClient(): void {
    this.kubectl('delete', 'pod', this.client, '-n', this.ns, '--wait=false', '--ignore-not-found');
  }

  /** Every answer of the client over `protocol` so far (kubectl logs with the runtime's timestamps). */
  answers(protocol: Protocol): Answer[] {
    let out: string;
    try {
      out = this.kubectl(
        'logs',
        '-n',
        this.ns,
        this.client,
        '-c',
        CLIENTS[protocol].container,
        '--timestamps',
      );
    } catch {
      return [];
    }
    return out
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const sp = l.indexOf(' ');
        return answerOf(protocol, Date.parse(l.slice(0, sp)), l.slice(sp + 1));
      });
  }

  /** A pod's sidecar's warnings and errors counted by message (and code, when one is logged). */
  proxyWarningCounts(pod: string): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const l of this.proxyWarnings(pod)) {
      const msg = /"msg":"([^"]*)"/.exec(l)?.[1] ?? l.slice(0, 80);
      const code = /"code":"([^"]*)"/.exec(l)?.[1];
      const key = code ? `${msg} (${code})` : msg;
      counts[key] = (counts[key] ?? 0) + 1;
    }
    return counts;
  }

  /** A pod's sidecar's warning and error log lines (none when its log cannot be read). */
  proxyWarnings(pod: string): string[] {
    try {
      return this.kubectl('logs', '-n', this.ns, pod, '-c', PROXY.containerName)
        .split('\n')
        .filter((l) => /"level":(40|50)/.test(l));
    } catch {
      return [];
    }
  }

  /** The client sidecar's last warnings and errors (for a report when requests failed). */
  clientProxyWarnings(): string[] {
    return this.proxyWarnings(this.client).slice(-20);
  }

  /**
   * Runs `fault` under the client's traffic and counts the answers from its start until
   * `settleMs` after it returned. Failures matching `expected` are ones the fault must cause.
   */
  async underFault(
    name: string,
    fault: () => Promise<string | undefined>,
    o: { settleMs?: number; expected?: RegExp | ((a: Answer) => boolean) } = {},
  ): Promise<ScenarioResult> {
    const t0 = Date.now();
    this.log(`[faults] ${name}: begins`);
    const notes = (await fault()) ?? '';
    const faultEnd = Date.now();
    await new Promise((r) => setTimeout(r, o.settleMs ?? 3000));
    const t1 = Date.now();
    // Lines reach the log a moment after they are written: wait for one past the window.
    const all = await eventually(
      `${this.client}: an answer after ${name} over ${this.protocols.join(', ')}`,
      () => {
        const a = this.protocols.map((p) => this.answers(p));
        return a.every((x) => x.some((y) => y.at > t1)) ? a.flat() : undefined;
      },
    );
    const counted = tally(all, t0, t1, o.expected);
    const r: ScenarioResult = {
      name,
      ...counted,
      durationSeconds: Math.round((t1 - t0) / 100) / 10,
      notes: `${notes}${notes ? '; ' : ''}fault ${((faultEnd - t0) / 1000).toFixed(1)} s, then ${((t1 - faultEnd) / 1000).toFixed(1)} s of traffic`,
    };
    const each = Object.entries(r.byProtocol)
      .map(([p, c]) => `${p} ${c.failed}/${c.requests}`)
      .join(', ');
    this.log(
      `[faults] ${name}: ${r.failed} of ${r.requests} requests failed (${each}; ${r.expectedFailed} expected)${r.failed ? `: ${r.failures.slice(0, 5).join(' | ')}` : ''}; ${r.notes}`,
    );
    return r;
  }

  /** The host pid of a container of a pod (containerd's task). */
  containerPid(namespace: string, pod: string, container: string): number {
    const p = this.json('get', 'pod', pod, '-n', namespace) as PodJson;
    const id = [...(p.status.initContainerStatuses ?? []), ...(p.status.containerStatuses ?? [])]
      .find((c) => c.name === container)
      ?.containerID?.replace(/^containerd:\/\//, '');
    if (!id) throw new Error(`${namespace}/${pod}: container ${container} has no container ID`);
    const line = execFileSync('ctr', ['--address', this.node.containerd, '-n', 'k8s.io', 'tasks', 'ls'], {
      encoding: 'utf8',
    })
      .split('\n')
      .find((l) => l.startsWith(id));
    if (!line) throw new Error(`containerd runs no task for ${namespace}/${pod} ${container} (${id})`);
    return Number(line.trim().split(/\s+/)[1]);
  }

  restarts(namespace: string, pod: string, container: string): number {
    const p = this.json('get', 'pod', pod, '-n', namespace) as PodJson;
    return (
      [...(p.status.initContainerStatuses ?? []), ...(p.status.containerStatuses ?? [])].find(
        (c) => c.name === container,
      )?.restartCount ?? 0
    );
  }

  /** SIGKILL of one container of a pod; returns once the kubelet restarted it and the pod is Ready. */
  async crashContainer(namespace: string, pod: string, container: string): Promise<number> {
    const before = this.restarts(namespace, pod, container);
    process.kill(this.containerPid(namespace, pod, container), 'SIGKILL');
    const t0 = Date.now();
    await eventually(
      `${namespace}/${pod}: ${container} restarted and the pod Ready`,
      () => {
        const p = this.json('get', 'pod', pod, '-n', namespace) as PodJson;
        const restarted = this.restarts(namespace, pod, container) > before;
        const ready = p.status.conditions?.some((x) => x.type === 'Ready' && x.status === 'True');
        return restarted && ready ? true : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    return Date.now() - t0;
  }

  /** A control-plane process of the real node by its binary's name. */
  controlPlanePid(binary: string): number {
    const pid = this.node.pids.find((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0')[0]!.endsWith(`/${binary}`);
      } catch {
        return false;
      }
    });
    if (!pid) throw new Error(`the real node runs no ${binary}`);
    return pid;
  }

  /** The operator pod holding the leader Lease. */
  operatorLeader(): { pod: string; renewTime: string } {
    const lease = this.json('get', 'lease', 'weft-operator', '-n', WEFT_NAMESPACE);
    const pods = (
      this.json('get', 'pods', '-n', WEFT_NAMESPACE, '-l', 'app.kubernetes.io/name=weft').items as PodJson[]
    ).map((p) => p.metadata.name);
    const pod = pods.find((n) => lease.spec.holderIdentity?.startsWith(n));
    if (!pod) throw new Error(`the Lease holder ${lease.spec.holderIdentity} is none of ${pods.join(', ')}`);
    return { pod, renewTime: lease.spec.renewTime };
  }

  // ---- the scenarios: each injects its fault and returns once the cluster recovered ----

  /** The leader operator's process SIGKILLed: the kubelet restarts it; a leader renews the Lease. */
  operatorSigkill = () =>
    this.underFault('operator SIGKILL', async () => {
      const { pod } = this.operatorLeader();
      const ms = await this.crashContainer(WEFT_NAMESPACE, pod, 'operator');
      const { renewTime } = this.operatorLeader();
      await eventually('a leader renews the Lease', () =>
        this.operatorLeader().renewTime !== renewTime ? true : undefined,
      );
      return `leader ${pod} killed, restarted and Ready in ${(ms / 1000).toFixed(1)} s`;
    });

  /** The leader's pod deleted: the other replica takes the Lease over. */
  operatorFailover = () => this.underFault('operator leader failover', () => this.deleteOperatorLeader());

  /** Deletes the leader operator's pod; returns once another replica holds the Lease. */
  async deleteOperatorLeader(): Promise<string> {
    const { pod } = this.operatorLeader();
    const t0 = Date.now();
    this.kubectl('delete', 'pod', pod, '-n', WEFT_NAMESPACE, '--wait=false');
    const next = await eventually(
      'another operator holds the Lease',
      () => {
        const l = this.operatorLeader();
        return l.pod !== pod ? l.pod : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    return `${next} took the Lease from ${pod} after ${((Date.now() - t0) / 1000).toFixed(1)} s`;
  }

  /** A backend's sidecar process SIGKILLed: the kubelet restarts the native sidecar. */
  sidecarCrash = () =>
    this.underFault(
      'sidecar crash (backend)',
      async () => {
        const [p] = this.backends();
        const ms = await this.crashContainer(this.ns, p!.metadata.name, PROXY.containerName);
        return `${p!.metadata.name}'s weft-proxy killed, restarted and Ready in ${(ms / 1000).toFixed(1)} s`;
      },
      { expected: inFlightCut() },
    );

  /** A backend's app process SIGKILLed: the kubelet restarts the container. */
  appCrash = () =>
    this.underFault(
      'app container crash (backend)',
      async () => {
        const [p] = this.backends();
        const ms = await this.crashContainer(this.ns, p!.metadata.name, 'app');
        return `${p!.metadata.name}'s app killed, restarted and Ready in ${(ms / 1000).toFixed(1)} s`;
      },
      { expected: inFlightCut() },
    );

  rollingRestart = () =>
    this.underFault('backend rolling restart', async () => {
      const n = this.backends().length;
      const t0 = Date.now();
      this.kubectl('rollout', 'restart', 'deployment/echo', '-n', this.ns);
      await eventually(
        'the rollout restart done',
        () =>
          this.kubectl('rollout', 'status', 'deployment/echo', '-n', this.ns, '--timeout=1s').includes(
            'successfully',
          )
            ? true
            : undefined,
        { timeoutMs: 300_000, intervalMs: 500 },
      );
      await this.available(n);
      return `${n} replicas rolled in ${((Date.now() - t0) / 1000).toFixed(1)} s`;
    });

  /** A backend pod deleted with --grace-period=0 --force: its processes are killed at once. */
  podKilled = () =>
    this.underFault('backend pod killed without grace', async () => {
      const pods = this.backends();
      const t0 = Date.now();
      this.kubectl('delete', 'pod', pods[0]!.metadata.name, '-n', this.ns, '--grace-period=0', '--force');
      await this.available(pods.length);
      return `${pods[0]!.metadata.name} force-deleted, replaced in ${((Date.now() - t0) / 1000).toFixed(1)} s`;
    });

  /** The backend scaled to zero for `holdMs`, then back: callers get 503 naming no endpoints meanwhile. */
  scaleToZero = (holdMs = 5000) => {
    let readyAt = Number.POSITIVE_INFINITY;
    return this.underFault(
      'backend scaled to zero and back',
      async () => {
        const n = this.backends().length;
        this.kubectl('scale', 'deployment/echo', '-n', this.ns, '--replicas=0');
        await eventually('no echo pod left', () => (this.backends().length === 0 ? true : undefined), {
          timeoutMs: 120_000,
          intervalMs: 250,
        });
        await new Promise((r) => setTimeout(r, holdMs));
        const t0 = Date.now();
        this.kubectl('scale', 'deployment/echo', '-n', this.ns, `--replicas=${n}`);
        // The data plane's part of the recovery: from the first new pod Ready (seen by polling,
        // so up to a poll late) to the client's first 200; the rest is the pod's start.
        const ready = await eventually(
          'a new echo pod Ready',
          () => (this.backends().length > 0 ? Date.now() : undefined),
          {
            timeoutMs: 180_000,
            intervalMs: 200,
          },
        );
        await this.available(n);
        // The first good answer of each protocol after the scale-up (the last of them counts).
        const firstOk = await eventually(
          `the client answered again over ${this.protocols.join(', ')}`,
          () => {
            const firsts = this.protocols.map((p) => this.answers(p).find((a) => a.ok && a.at > t0));
            return firsts.every(Boolean) ? firsts.reduce((a, b) => (b!.at > a!.at ? b : a))! : undefined;
          },
        );
        readyAt = ready;
        const dataPlane = Math.max(0, firstOk.at - ready);
        return `held at zero ${holdMs / 1000} s; scaled back to ${n}: first pod Ready ${((ready - t0) / 1000).toFixed(1)} s later, the client's first good answer over every protocol ${((firstOk.at - t0) / 1000).toFixed(1)} s later (data plane ${(dataPlane / 1000).toFixed(1)} s after Ready)`;
      },
      // From the scale-down until a new pod is Ready nothing can serve: every protocol fails
      // (HTTP and gRPC with the sidecars' 5xx naming why, TCP closed or reset). Up to 5 s after
      // Ready the data plane recovers (the issue's bound); a failure later is not expected.
      { expected: (a) => a.at <= readyAt + 5000 },
    );
  };

  /** A control-plane process stopped with SIGSTOP for `ms`, then continued. */
  paused = (binary: 'kube-apiserver' | 'etcd', ms = 20_000) =>
    this.underFault(`${binary} paused ${ms / 1000} s`, async () => {
      const pid = this.controlPlanePid(binary);
      process.kill(pid, 'SIGSTOP');
      try {
        await new Promise((r) => setTimeout(r, ms));
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      await eventually(
        `${binary} answers again`,
        () => (this.kubectl('get', '--raw', '/readyz') ? true : undefined),
        {
          timeoutMs: 60_000,
        },
      );
      return undefined;
    });

  /**
   * A control-plane process stopped (SIGTERM) and started again with the same command line (etcd
   * keeps its data): the sidecars serve their last config meanwhile, the watches resume.
   */
  controlPlaneRestart = (binary: 'kube-apiserver' | 'etcd') =>
    this.underFault(`${binary} restarted`, async () => {
      const t0 = Date.now();
      await this.node.restartProcess(binary);
      await eventually(
        `${binary} answers again`,
        () => (this.kubectl('get', '--raw', '/readyz') ? true : undefined),
        { timeoutMs: 120_000, intervalMs: 500 },
      );
      return `the apiserver ready again ${((Date.now() - t0) / 1000).toFixed(1)} s after the stop`;
    });

  /** The Prometheus text of a pod's sidecar (its health port, through the apiserver). */
  private sidecarMetrics(pod: string): string {
    return this.kubectl(
      'get',
      '--raw',
      `/api/v1/namespaces/${this.ns}/pods/${pod}:${PROXY.healthPort}/proxy/metrics`,
    );
  }

  /** The sidecar's certificate reloads of a pod of the namespace. */
  identityReloads(pod: string): number {
    return metricSum(this.sidecarMetrics(pod), 'weft_identity_reloads_total{', 'result="ok"');
  }

  /** Waits until the sidecars of the backends and the client reloaded their certificate `times` more. */
  private async identitiesReloaded(
    what: string,
    change: () => Promise<void> | void,
    times = 1,
  ): Promise<string> {
    const pods = [...this.backends().map((p) => p.metadata.name), this.client];
    const before = new Map(pods.map((p) => [p, this.identityReloads(p)]));
    const t0 = Date.now();
    await change();
    await eventually(
      `every sidecar (${pods.join(', ')}) on a new certificate ${times} time(s) after ${what}`,
      () => (pods.every((p) => this.identityReloads(p) >= before.get(p)! + times) ? true : undefined),
      { timeoutMs: 300_000, intervalMs: 2000 },
    );
    return `${what}; the ${pods.length} sidecars reloaded their certificate ${times} time(s) within ${((Date.now() - t0) / 1000).toFixed(1)} s`;
  }

  /**
   * Workload certificates rotated under traffic: the Mesh's lifetime shortened to 10m with
   * renewBefore 9m45s (reissued at once, then every 15 s) until every sidecar reloaded its
   * certificate (the kubelet updates Secret volumes at its sync, about a minute); then the Mesh's
   * `ca` is removed again (back to 24h at the next renewal).
   */
  workloadCertRotation = () =>
    this.underFault('workload certificates rotated', async () => {
      const patch = (ca: object | null) =>
        this.kubectl('patch', 'mesh', 'default', '--type=merge', '-p', JSON.stringify({ spec: { ca } }));
      try {
        return await this.identitiesReloaded(
          'Mesh ca.workloadCertLifetime 10m, renewBefore 9m45s',
          () => void patch({ workloadCertLifetime: '10m', renewBefore: '9m45s' }),
        );
      } finally {
        patch(null);
      }
    });

  /**
   * The mesh's root CA replaced (a new `weft-ca` Secret): the old root stays trusted for an
   * overlap while every workload certificate is reissued from the new one; connections stay
   * open across the change (the client's pooled mTLS connections).
   */
  rootCaRotation = () =>
    this.underFault('mesh root CA rotated (overlap)', async () => {
      const trustDomain = this.json('get', 'mesh', 'default').spec?.trustDomain ?? 'cluster.local';
      const now = new Date();
      const pods = [...this.backends().map((p) => p.metadata.name), this.client];
      const t0 = Date.now();
      await replaceWeftCa(this.kubectl, {
        trustDomain,
        lifetimeMs: 3650 * 86_400_000,
        now,
        namespace: WEFT_NAMESPACE,
      });
      // The operator's phases (Mesh condition CARotation, docs/identity.md): the new root into
      // every trust bundle until every sidecar confirms it, then certificates from it, until
      // every sidecar presents one (Done). Each phase's start is noted.
      const phases: string[] = [];
      const rotation = await eventually(
        'CARotation Done: every sidecar on a certificate from the new root',
        () => {
          const c = (
            this.json('get', 'mesh', 'default').status?.conditions as
              | { type: string; reason: string; message: string }[]
              | undefined
          )?.find((x) => x.type === 'CARotation');
          if (c && phases.at(-1)?.startsWith(c.reason) !== true)
            phases.push(`${c.reason} at +${((Date.now() - t0) / 1000).toFixed(1)} s`);
          return c?.reason === 'Done' && c.message.includes(now.toISOString()) ? c : undefined;
        },
        { timeoutMs: 600_000, intervalMs: 1000 },
      );
      // Each sidecar's certificate as it reports it (/config/applied): issued by the new root
      // (its name carries `now`).
      const issuer = (pod: string): string =>
        JSON.parse(
          this.kubectl(
            'get',
            '--raw',
            `/api/v1/namespaces/${this.ns}/pods/${pod}:${PROXY.healthPort}/proxy/config/applied?config=false`,
          ),
        ).certificate?.issuer ?? '';
      const stale = pods.filter((p) => !issuer(p).includes(now.toISOString()));
      if (stale.length > 0)
        throw new Error(`CARotation says Done, but ${stale.join(', ')} present another certificate`);
      return `weft-ca replaced by a new root; CARotation ${phases.join(', ')}: ${rotation.message}`;
    });

  /**
   * A connection flood: a meshed pod opens `connections` connections to echo:8080 at once through
   * its sidecar, sends a request on each and holds them open for `holdMs`; the steady client's
   * requests must not fail meanwhile, and the notes carry how many flood requests were answered
   * and the resident memory of the flooding pod's sidecar and the backends' sidecars.
   */
  flood = (connections = 2000, holdMs = 20_000) =>
    this.underFault(`connection flood (${connections} connections)`, async () => {
      // Opens every connection, one request each, keeps them open, then prints one summary line.
      const script = `
        const net = require('node:net');
        const n = ${connections}, counts = {}, socks = [];
        const add = (k) => { counts[k] = (counts[k] ?? 0) + 1; };
        const flood = (ip) => {
          for (let i = 0; i < n; i++) {
            const s = net.connect(8080, ip, () => s.write('GET / HTTP/1.1\\r\\nHost: echo\\r\\n\\r\\n'));
            s.once('data', (d) => {
              const head = d.toString();
              add(head.split('\\r\\n')[0].split(' ')[1] + (/weft-error: (\\S+)/i.exec(head)?.[1] ? ' ' + /weft-error: (\\S+)/i.exec(head)[1] : ''));
            });
            s.on('error', (e) => add('error ' + e.code));
            socks.push(s);
          }
          setTimeout(() => { console.log(JSON.stringify(counts)); for (const s of socks) s.destroy(); }, ${holdMs});
        };
        // Once this pod's sidecar answers (it may start before its first config), all at once.
        const ready = () => fetch('http://echo:8080/').then((r) => r.status === 200, () => false);
        (async () => {
          while (!(await ready())) await new Promise((r) => setTimeout(r, 500));
          require('node:dns').lookup('echo', (err, ip) => { if (err) throw err; flood(ip); });
        })();`;
      const sidecars = () => [
        ...this.backends().map((p) => p.metadata.name),
        ...(this.json('get', 'pod', 'flood', '-n', this.ns).status.phase === 'Running' ? ['flood'] : []),
      ];
      const rss = (pods = sidecars()) =>
        Object.fromEntries(
          pods.map((p) => {
            try {
              return [p, Math.round(this.rssMiB(this.ns, p, PROXY.containerName))];
            } catch {
              return [p, Number.NaN];
            }
          }),
        );
      this.apply({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'flood', namespace: this.ns, labels: { app: 'flood' } },
        spec: {
          serviceAccountName: this.c.serviceAccount,
          restartPolicy: 'Never',
          terminationGracePeriodSeconds: 1,
          containers: [{ name: 'app', image: DEMO_IMAGE, command: ['node', '-e', script] }],
        },
      });
      try {
        await eventually(
          'the flood pod running',
          () =>
            this.json('get', 'pod', 'flood', '-n', this.ns).status.phase === 'Running' ? true : undefined,
          { timeoutMs: 120_000, intervalMs: 500 },
        );
        const before = rss();
        await new Promise((r) => setTimeout(r, holdMs / 2));
        const during = rss();
        const summary = await eventually(
          'the flood summary',
          () => this.kubectl('logs', '-n', this.ns, 'flood', '-c', 'app').trim() || undefined,
          { timeoutMs: holdMs + 60_000, intervalMs: 1000 },
        );
        // What the sidecars said about it: their warnings and errors, counted by message.
        const said = Object.fromEntries(
          ['flood', ...this.backends().map((p) => p.metadata.name)].map((p) => [
            p,
            this.proxyWarningCounts(p),
          ]),
        );
        const after = rss();
        // Where time went: the requests each backend's sidecar took over 1 s to answer from its
        // app (inbound, from the request's arrival to the app's answer), gRPC and HTTP apart.
        const slow = Object.fromEntries(
          this.backends().map((p) => {
            const text = this.sidecarMetrics(p.metadata.name);
            const over1s = (...parts: string[]) =>
              metricSum(text, 'weft_request_duration_seconds_count{', 'direction="inbound"', ...parts) -
              metricSum(
                text,
                'weft_request_duration_seconds_bucket{',
                'direction="inbound"',
                'le="1"',
                ...parts,
              );
            return [p.metadata.name, { grpc: over1s('grpc_status="0"'), http: over1s('grpc_status=""') }];
          }),
        );
        // How much the backends' sidecars give back once the flood is over (its pod gone).
        this.kubectl('delete', 'pod', 'flood', '-n', this.ns, '--wait=false', '--ignore-not-found');
        await new Promise((r) => setTimeout(r, GIVEN_BACK_MS));
        const later = rss(this.backends().map((p) => p.metadata.name));
        return `flood ${summary}; sidecars' warnings ${JSON.stringify(said)}; sidecar MiB when it began ${JSON.stringify(before)}, while held ${JSON.stringify(during)}, after ${JSON.stringify(after)}, ${GIVEN_BACK_MS / 1000} s after ${JSON.stringify(later)}; inbound requests answered by the app in over 1 s, per backend ${JSON.stringify(slow)}`;
      } finally {
        this.kubectl('delete', 'pod', 'flood', '-n', this.ns, '--wait=false', '--ignore-not-found');
      }
    });

  /** `helm upgrade weft <chart>` in Weft's namespace, waiting for the Deployments. */
  private helm(chartDir: string, set: Record<string, string> = {}): void {
    execFileSync(
      helmBinary(),
      [
        '--kubeconfig',
        this.c.kubeconfig,
        'upgrade',
        'weft',
        join(chartDir, 'charts', 'weft'),
        '--namespace',
        WEFT_NAMESPACE,
        '--wait',
        '--timeout',
        '5m',
        ...Object.entries(set).flatMap(([k, v]) => ['--set', `${k}=${v}`]),
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
  }

  /**
   * Weft upgraded with `helm upgrade` from `ref`'s chart and image to this tree's, under traffic:
   * first `ref` is installed over this tree's (its image, built beforehand by `baselineImage`,
   * imported and tagged `baseline`, this tree's image imported again under its own tag; the Mesh's
   * `proxy.image` set to the baseline so its sidecars are injected), the backend rolled and the
   * client started again on it. Then the scenario: `helm upgrade` to this tree's chart (control
   * plane first), `proxy.image` removed, the backend rolled (sidecars next; the client keeps its
   * baseline sidecar: both versions talk during the change).
   */
  helmUpgrade = async (base: Baseline): Promise<ScenarioResult> => {
    const image = WEFT_IMAGE.replace(/:[^:/]+$/, '');
    const ctr = (...args: string[]) =>
      execFileSync('ctr', ['--address', this.node.containerd, '-n', 'k8s.io', 'images', ...args], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
    const mesh = (proxy: object | null) =>
      this.kubectl('patch', 'mesh', 'default', '--type=merge', '-p', JSON.stringify({ spec: { proxy } }));
    this.node.importImage(baselineImage(base));
    ctr('tag', '--force', WEFT_IMAGE, `${image}:baseline`);
    this.node.importImage(join(repoRoot, 'dist', 'images', 'weft.oci.tar'));
    this.helm(base.dir, { 'image.tag': 'baseline' });
    mesh({ image: `${image}:baseline` });
    await this.rollingRestart();
    this.stopClient();
    await eventually('the client pod gone', () => {
      try {
        this.json('get', 'pod', this.client, '-n', this.ns);
        return undefined;
      } catch {
        return true;
      }
    });
    await this.startClient(this.client, 50, this.protocols);
    this.log(
      `[faults] helm upgrade: Weft ${base.ref} (${base.commit.slice(0, 12)}) installed, workloads on its sidecars`,
    );
    return this.underFault(`helm upgrade from ${base.ref}`, async () => {
      const t0 = Date.now();
      this.helm(repoRoot);
      const cp = Date.now() - t0;
      mesh(null);
      const rolled = await this.rollingRestart();
      return `control plane upgraded in ${(cp / 1000).toFixed(1)} s, then the backend rolled onto the new sidecars (${rolled.notes}); the client kept ${base.ref}'s sidecar`;
    });
  };

  /** The webhook's pods (names). */
  webhookPods(): string[] {
    return this.webhookPodList().map((p) => p.metadata.name);
  }

  /** The webhook's pods. */
  webhookPodList(): (PodJson & { status: { podIP?: string } })[] {
    return this.json('get', 'pods', '-n', WEFT_NAMESPACE, '-l', 'app.kubernetes.io/name=weft-webhook').items;
  }

  /** Resident memory (MiB) of a container, read on the host (/proc/<pid>/status). */
  rssMiB(namespace: string, pod: string, container: string, field: 'VmRSS' | 'RssAnon' = 'VmRSS'): number {
    const status = readFileSync(`/proc/${this.containerPid(namespace, pod, container)}/status`, 'utf8');
    return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) / 1024;
  }

  /**
   * A soak: the steady traffic for `minutes`, the private (anonymous resident) memory of the client's and the
   * backends' sidecars, the leader operator and a webhook sampled every `everyMs`; `memory`
   * holds each one's first, last and peak MiB and its least-squares slope in MiB per hour.
   */
  soak = async (minutes: number, everyMs = 15_000): Promise<ScenarioResult & { memory: MemorySlope[] }> => {
    const [webhook = ''] = this.webhookPods();
    const watched: [string, string, string][] = [
      [this.ns, this.client, PROXY.containerName],
      ...this.backends().map((p): [string, string, string] => [
        this.ns,
        p.metadata.name,
        PROXY.containerName,
      ]),
      [WEFT_NAMESPACE, this.operatorLeader().pod, 'operator'],
      [WEFT_NAMESPACE, webhook, 'webhook'],
    ];
    const samples = new Map<string, [number, number][]>(watched.map(([ns, p, c]) => [`${ns}/${p}/${c}`, []]));
    const r = await this.underFault(`soak ${minutes} min`, async () => {
      const t0 = Date.now();
      while (Date.now() - t0 < minutes * 60_000) {
        for (const [ns, p, c] of watched) {
          try {
            // Private (anonymous) memory: the Node.js binary's pages are shared between pods.
            samples
              .get(`${ns}/${p}/${c}`)!
              .push([(Date.now() - t0) / 3_600_000, this.rssMiB(ns, p, c, 'RssAnon')]);
          } catch {}
        }
        await new Promise((res) => setTimeout(res, everyMs));
      }
      return `${samples.values().next().value?.length ?? 0} samples every ${everyMs / 1000} s`;
    });
    const memory = [...samples].map(([container, xy]) => memorySlope(container, xy));
    r.notes += `; memory ${memory.map((m) => `${m.container} ${m.firstMiB}→${m.lastMiB} MiB (${m.slopeMiBPerHour} MiB/h)`).join(', ')}`;
    return { ...r, memory };
  };

  /**
   * Watches the backend's EndpointSlices: one line per change, "+<s>s <slice>: <pod>=<ready>/
   * <serving>/<terminating> …", the seconds since `t0`. `stop` ends the watch.
   */
  watchSlices(t0: number): { lines: string[]; stop: () => void } {
    const lines: string[] = [];
    const template =
      '{.metadata.name}:{range .endpoints[*]} {.targetRef.name}={.conditions.ready}/{.conditions.serving}/{.conditions.terminating}{end}{"\\n"}';
    const p = spawn(
      this.c.kubectl,
      [
        '--kubeconfig',
        this.c.kubeconfig,
        'get',
        'endpointslices',
        '-n',
        this.ns,
        '-l',
        'kubernetes.io/service-name=echo',
        '--watch',
        '-o',
        `jsonpath=${template}`,
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    createInterface({ input: p.stdout }).on('line', (l) =>
      lines.push(`+${((Date.now() - t0) / 1000).toFixed(1)}s ${l.trim()}`),
    );
    return { lines, stop: () => p.kill() };
  }

  /**
   * The node's kubelet or containerd stopped (SIGTERM) and started again. A restarted kubelet
   * may report every container not Ready until its first readiness probe (a race of its status
   * sync with its probe workers, kubernetes/kubernetes#100277), so every endpoint of the backend
   * turns not ready for a moment (docs/reliability.md): with `flip`, the scenario watches the
   * backend's EndpointSlice for up to 10 s after the node serves again for that flip and back,
   * then 3 s of traffic; without, 30 s of traffic after the node serves again. The notes carry
   * the EndpointSlice's changes and whether the flip came.
   */
  nodeRestart = (name: 'kubelet' | 'containerd', o: { flip?: boolean; settleMs?: number } = {}) =>
    this.underFault(
      `${name} restarted`,
      async () => {
        const t0 = Date.now();
        const slices = this.watchSlices(t0);
        try {
          await this.restartFor(name, t0);
          if (o.flip) {
            const seen = await eventually(
              'the EndpointSlice not ready and back',
              () => {
                const i = slices.lines.findIndex((l) => / [^ =]+=false\//.test(l));
                return i >= 0 && slices.lines.slice(i + 1).some((l) => !/=false\//.test(l))
                  ? true
                  : undefined;
              },
              { timeoutMs: 10_000, intervalMs: 250 },
            ).catch(() => false);
            if (!seen) slices.lines.push('(no not-ready flip within 10 s: this restart did not race)');
          }
        } finally {
          slices.stop();
        }
        return `back in ${((Date.now() - t0) / 1000).toFixed(1)} s; EndpointSlice: ${slices.lines.join(' | ')}`;
      },
      { settleMs: o.settleMs ?? (o.flip ? 3000 : 30_000) },
    );

  /** Restarts the node's `name` and waits until the kubelet serves again and the backend is available. */
  private async restartFor(name: 'kubelet' | 'containerd', t0: number): Promise<void> {
    await this.node.restartProcess(name);
    // The Node's Ready condition is not rewritten at once (node leases): the kubelet's healthz
    // through the apiserver, then the backend available, say the node serves again.
    await eventually(
      `the kubelet serving after the ${name} restart`,
      () =>
        this.kubectl('get', '--raw', `/api/v1/nodes/${this.node.name}/proxy/healthz`) === 'ok'
          ? true
          : undefined,
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    await this.available(2);
    this.log(
      `[faults] ${name} restarted: the node serves again after ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );
  }

  /**
   * The webhook scaled to zero while pods are created: a pod of the STRICT namespace is refused
   * (failurePolicy Fail: none starts without its sidecar), a pod of an unmeshed namespace is
   * created (the cluster does not wedge); once the webhook is back, the pod is created with its
   * sidecar. Throws when any of that is not so.
   */
  webhookDown = (outsideNamespace: string) =>
    this.underFault('webhook down while pods are created', async () => {
      const pod = (name: string, namespace: string) => ({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace },
        spec: {
          serviceAccountName: namespace === this.ns ? this.c.serviceAccount : 'default',
          terminationGracePeriodSeconds: 1,
          containers: [{ name: 'app', image: DEMO_IMAGE, command: ['node', 'hack/demo-apps/server.ts'] }],
        },
      });
      const replicas = this.json('get', 'deployment', 'weft-webhook', '-n', WEFT_NAMESPACE).spec.replicas;
      this.kubectl('scale', 'deployment/weft-webhook', '-n', WEFT_NAMESPACE, '--replicas=0');
      let refused = '';
      try {
        await eventually('no webhook pod left', () => (this.webhookPods().length === 0 ? true : undefined));
        try {
          this.apply(pod('unmeshed-attempt', this.ns));
        } catch (e) {
          refused = String((e as { stderr?: string }).stderr ?? e).trim();
        }
        if (!refused)
          throw new Error(`a pod of the STRICT namespace ${this.ns} was created without the webhook`);
        this.apply(pod('outside-while-down', outsideNamespace));
      } finally {
        this.kubectl('scale', 'deployment/weft-webhook', '-n', WEFT_NAMESPACE, `--replicas=${replicas}`);
      }
      await eventually(
        'the webhook back: the pod created with its sidecar',
        () => {
          this.apply(pod('meshed-after', this.ns));
          return true;
        },
        { timeoutMs: 120_000, intervalMs: 1000 },
      );
      const injected = this.json('get', 'pod', 'meshed-after', '-n', this.ns).metadata.annotations?.[
        'weft.dev/injected'
      ];
      for (const [n, ns] of [
        ['meshed-after', this.ns],
        ['outside-while-down', outsideNamespace],
      ] as const)
        this.kubectl('delete', 'pod', n, '-n', ns, '--wait=false');
      if (!injected) throw new Error('the pod created once the webhook was back has no sidecar');
      return `refused while down: ${refused.split('\n')[0]}`;
    });

  /**
   * The webhook's certificate rotated while pods are created in the meshed namespace (a
   * server-side dry run every 2 s, through the webhook): first its serving certificate made due
   * for renewal, then its CA made due for replacement (hack/lib/webhookcerts.ts: what a year of
   * time would do); the replicas pick each up at their reload (every 60 s), the CA in two steps
   * (the new CA in the caBundle first, certificates from it two reloads later). Counts refused
   * and unmeshed pods and the moments a replica served a certificate the caBundle did not verify
   * (all expected 0); throws when a pod was created without its sidecar.
   */
  webhookCertRotation = () =>
    this.underFault('webhook certificate rotated', async () => {
      const SECRET = 'weft-webhook-tls';
      const data = (): Record<string, string> =>
        this.json('get', 'secret', SECRET, '-n', WEFT_NAMESPACE).data;
      const write = (d: Record<string, string>) =>
        this.kubectl(
          'patch',
          'secret',
          SECRET,
          '-n',
          WEFT_NAMESPACE,
          '--type=merge',
          '-p',
          JSON.stringify({ data: d }),
        );
      const text = (s: string | undefined) => Buffer.from(s ?? '', 'base64').toString('utf8');
      const t0 = Date.now();
      const at = () => `+${((Date.now() - t0) / 1000).toFixed(1)}s`;
      let created = 0;
      let unmeshed = 0;
      const refused: string[] = [];
      const unverified: string[] = [];
      const probe = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'webhook-rotation-probe', namespace: this.ns },
        spec: {
          serviceAccountName: this.c.serviceAccount,
          containers: [{ name: 'app', image: DEMO_IMAGE, command: ['node', 'hack/demo-apps/server.ts'] }],
        },
      };
      /** One pod through the webhook; each replica's served certificate against the caBundle. */
      const served = async () => {
        try {
          const out = JSON.parse(
            execFileSync(
              this.c.kubectl,
              ['--kubeconfig', this.c.kubeconfig, 'create', '--dry-run=server', '-o', 'json', '-f', '-'],
              { input: JSON.stringify(probe), encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] },
            ),
          );
          const names = [...(out.spec.initContainers ?? []), ...out.spec.containers].map(
            (c: { name: string }) => c.name,
          );
          if (!names.includes(PROXY.containerName)) unmeshed++;
        } catch (e) {
          refused.push(
            `${at()} ${
              String((e as { stderr?: string }).stderr ?? e)
                .trim()
                .split('\n')[0]
            }`,
          );
        }
        created++;
        const bundle = text(
          this.json('get', 'mutatingwebhookconfiguration', 'weft-injector').webhooks[0].clientConfig.caBundle,
        );
        const ips = this.webhookPodList()
          .filter((p) => !p.metadata.deletionTimestamp && p.status.podIP)
          .map((p) => p.status.podIP!);
        const certs = await Promise.all(ips.map((ip) => servedCertificate(ip, 9443)));
        certs.forEach((c, i) => {
          if (c && !bundleVerifies(bundle, c))
            unverified.push(
              `${at()} ${ips[i]} serves a certificate from ${c.issuer} the caBundle does not verify`,
            );
        });
        // Every replica must have answered for the step to count as done.
        return certs.every((c) => c !== undefined) ? certs : [];
      };
      const until = async (what: string, done: (certs: X509Certificate[]) => boolean, timeoutMs: number) => {
        const start = Date.now();
        for (;;) {
          if (done(await served())) return ((Date.now() - start) / 1000).toFixed(1);
          if (Date.now() - start > timeoutMs) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
          await new Promise((r) => setTimeout(r, 2000));
        }
      };
      const original = data();
      const due = await servingCertDue(original);
      write(due);
      const renewed = await until(
        'every replica serving a renewed certificate',
        (certs) => {
          const d = data();
          const want = new X509Certificate(text(d['tls.crt'])).fingerprint256;
          return (
            d['tls.crt'] !== due['tls.crt'] &&
            certs.length > 0 &&
            certs.every((c) => c.fingerprint256 === want)
          );
        },
        300_000,
      );
      write(await caDue(data()));
      const replaced = await until(
        'every replica serving a certificate from a new CA',
        (certs) => {
          const d = data();
          const ca = new X509Certificate(text(d['ca.crt']));
          return (
            d['ca.key'] !== original['ca.key'] &&
            certs.length > 0 &&
            certs.every((c) => c.verify(ca.publicKey))
          );
        },
        600_000,
      );
      const summary = `serving certificate renewed on every replica in ${renewed} s, CA replaced on every replica in ${replaced} s; ${created} pods created (server-side dry run) meanwhile: ${refused.length} refused, ${unmeshed} without a sidecar; ${unverified.length} moments a replica served a certificate the caBundle did not verify${[...refused, ...unverified].length ? `: ${[...refused, ...unverified].slice(0, 5).join(' | ')}` : ''}`;
      if (unmeshed > 0) throw new Error(summary);
      return summary;
    });
}

/** Builds the weft image of a baseline tree (its own hack/image/build.ts); returns the archive. */
export function baselineImage(base: Baseline, build = false): string {
  if (build)
    execFileSync(process.execPath, [join(base.dir, 'hack', 'image', 'build.ts'), 'weft'], {
      cwd: base.dir,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  return join(base.dir, 'dist', 'images', 'weft.oci.tar');
}

export interface MemorySlope {
  container: string;
  samples: number;
  firstMiB: number;
  lastMiB: number;
  peakMiB: number;
  /** Least-squares slope of the resident memory over the soak. */
  slopeMiBPerHour: number;
}

/** The first, last and peak of (hours, MiB) samples and their least-squares slope. */
export function memorySlope(container: string, xy: [number, number][]): MemorySlope {
  const n = xy.length;
  const round = (x: number) => Math.round(x * 10) / 10;
  const mx = xy.reduce((a, [x]) => a + x, 0) / n;
  const my = xy.reduce((a, [, y]) => a + y, 0) / n;
  const sxx = xy.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  const sxy = xy.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0);
  return {
    container,
    samples: n,
    firstMiB: round(xy[0]?.[1] ?? 0),
    lastMiB: round(xy.at(-1)?.[1] ?? 0),
    peakMiB: round(Math.max(0, ...xy.map(([, y]) => y))),
    slopeMiBPerHour: sxx > 0 ? round(sxy / sxx) : 0,
  };
}

interface PodJson {
  metadata: { name: string; deletionTimestamp?: string; annotations?: Record<string, string> };
  status: {
    phase: string;
    conditions?: { type: string; status: string }[];
    initContainerStatuses?: { name: string; containerID?: string; restartCount: number }[];
    containerStatuses?: { name: string; containerID?: string; restartCount: number }[];
  };
}

export interface ChurnResult {
  requests: number;
  failed: string[];
  /** Pods that answered: old and new replicas. */
  servedBy: string[];
  rolloutMs: number;
  /** When requests failed: the client's sidecar's warnings and errors, for the report. */
  clientProxyWarnings: string[];
}

/**
 * A rolling restart of a backend (`replicas`, default 2) under the steady traffic of a meshed
 * HTTP/1.1 client (one request every 50 ms): what the e2e propagation suite and
 * bench/propagation.ts measure. The client and the backend stay; the failures are the requests that failed.
 */
export async function rollingRestartUnderLoad(o: FaultContext & { replicas?: number }): Promise<ChurnResult> {
  const f = new Faults(o);
  await f.deployEcho(o.replicas ?? 2);
  await f.startClient('steady', 50, ['http']);
  try {
    const t0 = Date.now();
    const r = await f.rollingRestart();
    return {
      requests: r.requests,
      failed: r.failures,
      servedBy: r.servedBy,
      rolloutMs: Date.now() - t0,
      clientProxyWarnings: r.failed ? f.clientProxyWarnings() : [],
    };
  } finally {
    f.stopClient();
  }
}
