// npm run conformance: the upstream Gateway API conformance suite (sigs.k8s.io/gateway-api
// conformance, pinned in hack/conformance/go.mod) against Weft on the real one-node cluster.
// It uses the cluster of `npm run cluster:up` when one runs from this checkout, else starts its
// own (taking the real-cluster lock) and stops it at the end; builds and imports Weft's image
// and the suite's echo images (hack/conformance/build.ts), installs Weft with Helm and the
// Gateway API CRDs (standard channel, from the module cache: hack/install.ts), then
// runs the suite's test binary with the profiles asked for, Weft's supported features and the
// injection label on the suite's namespaces (so their pods start meshed). It writes the suite's
// own report (bench/results/gateway-conformance.yaml by default), prints one summary line per
// profile, and removes everything it created.
//
//   npm run conformance                                   # MESH-HTTP, MESH-GRPC and GATEWAY-HTTP
//   npm run conformance -- --profiles GATEWAY-HTTP        # some profiles (the suite's names)
//   npm run conformance -- --run-test MeshBasic --failures /tmp/failures.md --log /tmp/suite.log
//   npm run conformance -- --suite-arg -timeout-config-overrides=RouteMustHaveParents:10   # any flag of the suite
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { load } from 'js-yaml';
import { INJECT_LABEL } from '../../api/constants.ts';
import { GATEWAY_CONTROLLER_NAME } from '../../operator/compile/gatewaytypes.ts';
import { readState } from '../cluster.ts';
import { removeGatewayApiCrds } from '../gateway-api.ts';
import { buildImages, helmBinary, installWeft, WEFT_NAMESPACE } from '../install.ts';
import { lockRealCluster, noteRealClusterDir } from '../lib/real-cluster-lock.ts';
import { importIntoNode, startRealNode } from '../node/index.ts';
import { ConformanceError, conformanceImages, PROFILES, type Profile, suiteBinary } from './build.ts';

const root = join(import.meta.dirname, '..', '..');
export const DEFAULT_REPORT = join(root, 'bench', 'results', 'gateway-conformance.yaml');
export const DEFAULT_PROFILES: Profile[] = ['MESH-HTTP', 'MESH-GRPC', 'GATEWAY-HTTP'];
/**
 * The GatewayClass the suite's gateway tests use (its -gateway-class default): the suite waits
 * for it to be Accepted but does not create it; the run applies it with Weft's controllerName.
 */
export const CONFORMANCE_GATEWAY_CLASS = 'gateway-conformance';
export const conformanceGatewayClass = () => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'GatewayClass',
  metadata: { name: CONFORMANCE_GATEWAY_CLASS },
  spec: { controllerName: GATEWAY_CONTROLLER_NAME },
});

/**
 * The features Weft tells the suite it supports, per profile (the profile's core features are
 * implied). Every extended mesh feature of the suite, and the HTTPRoute features some mesh tests
 * need beside them (MeshConsumerRoute, MeshFrontend, MeshFrontendHostname and MeshPorts check a
 * ResponseHeaderModifier; MeshPorts a parentRef port; MeshHTTPRoute303/307/308Redirect those
 * status codes): a test whose features are not all declared is not run at all. docs/gateway-api.md ("Conformance") lists the tests that do not
 * pass yet, with their reasons.
 */
export const SUPPORTED_FEATURES: Record<Profile, string[]> = {
  'MESH-HTTP': [
    'HTTPRoute303RedirectStatusCode',
    'HTTPRoute307RedirectStatusCode',
    'HTTPRoute308RedirectStatusCode',
    'HTTPRouteParentRefPort',
    'HTTPRouteResponseHeaderModification',
    'MeshClusterIPMatching',
    'MeshConsumerRoute',
    'MeshHTTPRouteBackendRequestHeaderModification',
    'MeshHTTPRouteNamedRouteRule',
    'MeshHTTPRouteQueryParamMatching',
    'MeshHTTPRouteRedirectPath',
    'MeshHTTPRouteRedirectPort',
    'MeshHTTPRouteRewritePath',
    'MeshHTTPRouteSchemeRedirect',
  ],
  'MESH-GRPC': [],
  // Issue 20 (ingress): the gateway's core, and the HTTPRoute features the mesh list declares
  // (the suite takes one feature list for all profiles: a run of the three profiles runs their
  // gateway tests too, so a GATEWAY-HTTP run alone declares the same). docs/ingress.md lists the others.
  'GATEWAY-HTTP': [
    'Gateway',
    'HTTPRoute',
    'HTTPRoute303RedirectStatusCode',
    'HTTPRoute307RedirectStatusCode',
    'HTTPRoute308RedirectStatusCode',
    'HTTPRouteParentRefPort',
    'HTTPRouteResponseHeaderModification',
  ],
};

// Ranges and bridge of its own when it starts the cluster: apart from the demo's (10.123/16,
// 10.124/16), the e2e suite's (10.121/16, 10.122/16) and the node test's (10.125/16, 10.126/16).
const POD_CIDR = '10.119.0.0/16';
const SERVICE_CIDR = '10.120.0.0/16';
/** What marks the cluster a run starts (test/support/leftovers.ts finds what it left with it). */
export const OWN_CLUSTER = {
  dir: join(tmpdir(), 'weft-conformance-'),
  bridge: `wc${process.pid % 100000}`,
  ranges: /10\.119\.|10\.120\./,
};

export interface ConformanceOptions {
  profiles?: Profile[];
  /** Where the suite's report goes. */
  report?: string;
  /** One test of the suite (its short name, e.g. MeshBasic) instead of all of them. */
  runTest?: string;
  /** Keep the suite's whole output there. */
  logFile?: string;
  /** More flags of the suite, e.g. -timeout-config-overrides=RouteMustHaveParents:10, -skip-tests=… */
  extraArgs?: string[];
  log?: (line: string) => void;
  /**
   * Called once this run is the only one touching the host's cluster state: right after it takes
   * the real-cluster lock (or at once on a running cluster:up cluster). A before/after snapshot
   * of the host is taken here, not earlier: another test's cluster may be running until then.
   */
  onLocked?: () => void;
}

export interface Statistics {
  Passed: number;
  Failed: number;
  Skipped: number;
}
export interface Status {
  result: 'success' | 'partial' | 'failure' | string;
  statistics: Statistics;
  failedTests?: string[];
  skippedTests?: string[];
}
export interface ProfileReport {
  name: string;
  summary: string;
  core: Status;
  extended?: Status & { supportedFeatures?: string[]; unsupportedFeatures?: string[] };
}
export interface ConformanceReport {
  apiVersion: string;
  kind: string;
  gatewayAPIVersion: string;
  gatewayAPIChannel: string;
  mode: string;
  profiles: ProfileReport[];
}

export interface ConformanceRun {
  report: ConformanceReport;
  reportPath: string;
  /** The suite's test names that failed, with the failure's lines from its output. */
  failures: Map<string, string[]>;
  /** Each test's outcome (outcomesOf): also the tests no profile's report counts. */
  outcomes: Map<string, 'PASS' | 'FAIL' | 'SKIP'>;
  /** Exit code of the suite (1 when a test failed). */
  exitCode: number;
  durationMs: number;
}

/** `--profiles a,b`, `--report`, `--run-test`, `--log`, `--failures`; a bad one names the fix. */
export function parseArgs(argv: string[]): ConformanceOptions & { failuresFile?: string } {
  const o: ConformanceOptions & { failuresFile?: string } = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    if (!['--profiles', '--report', '--run-test', '--log', '--failures', '--suite-arg'].includes(flag)) {
      throw new ConformanceError(
        'WEFT_CONFORMANCE_SETTING',
        `unknown argument "${flag}"; use --profiles, --report, --run-test, --log, --failures or --suite-arg`,
      );
    }
    if (value === undefined || (value.startsWith('--') && flag !== '--suite-arg'))
      throw new ConformanceError('WEFT_CONFORMANCE_SETTING', `${flag} needs a value`);
    i++;
    if (flag === '--profiles') {
      const names = value.split(',').filter(Boolean);
      const bad = names.filter((n) => !(PROFILES as readonly string[]).includes(n));
      if (bad.length || !names.length) {
        throw new ConformanceError(
          'WEFT_CONFORMANCE_SETTING',
          `--profiles: "${bad.join(',') || value}" is not a profile; use a comma-separated list of ${PROFILES.join(', ')}`,
        );
      }
      o.profiles = names as Profile[];
    } else if (flag === '--report') o.report = value;
    else if (flag === '--run-test') o.runTest = value;
    else if (flag === '--log') o.logFile = value;
    else if (flag === '--suite-arg') o.extraArgs = [...(o.extraArgs ?? []), value];
    else o.failuresFile = value;
  }
  return o;
}

/**
 * The suite's gateway tests of GRPCRoute (profile GATEWAY-GRPC, which Weft's gateway does not
 * serve: it takes HTTPRoutes only). The suite runs a test when all its features are declared,
 * whatever the profiles asked: MESH-GRPC declares GRPCRoute and GATEWAY-HTTP declares Gateway, so
 * a run of both would run these too (in no profile's report, each failing after its timeouts).
 */
export const GATEWAY_GRPC_TESTS = [
  'GRPCExactMethodMatching',
  'GRPCRouteHeaderMatching',
  'GRPCRouteListenerHostnameMatching',
  'GRPCRouteNamedRule',
  'GRPCRouteWeight',
];

/** The suite's arguments for `profiles`: Weft's features, the injection label, the report. */
export function suiteArgs(profiles: Profile[], report: string, runTest?: string): string[] {
  const features = [...new Set(profiles.flatMap((p) => SUPPORTED_FEATURES[p]))].sort();
  const skip = features.includes('Gateway') && profiles.includes('MESH-GRPC') ? GATEWAY_GRPC_TESTS : [];
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  return [
    '-test.v',
    '-test.timeout=60m',
    '-test.run=^TestConformance$',
    `-conformance-profiles=${profiles.join(',')}`,
    ...(features.length ? [`-supported-features=${features.join(',')}`] : []),
    // The suite creates its namespaces with these labels: their pods get Weft's sidecar.
    `-namespace-labels=${INJECT_LABEL}=enabled`,
    `-report-output=${report}`,
    '-organization=weft-mesh',
    '-project=weft',
    '-url=https://github.com/weft-mesh/weft',
    `-version=v${pkg.version}`,
    '-contact=@weft-mesh/maintainers',
    ...(skip.length ? [`-skip-tests=${skip.join(',')}`] : []),
    ...(runTest ? [`-run-test=${runTest}`] : []),
  ];
}

/**
 * The failing tests of a `go test -v` output of the suite, each with the lines that say why
 * (testify's Error and Messages fields, else the test's last log lines).
 */
export function failuresOf(output: string): Map<string, string[]> {
  const lines = new Map<string, string[]>();
  const failed = new Map<string, string[]>();
  let current = '';
  for (const line of output.split('\n')) {
    const head = /^\s*(?:=== (?:RUN|CONT|NAME|PAUSE)|--- (PASS|FAIL|SKIP):)\s+TestConformance\/(\S+)/.exec(
      line,
    );
    if (head) {
      current = head[2]!;
      if (head[1] === 'FAIL') {
        const own = lines.get(current) ?? [];
        const i = own.findIndex((l) => /^\s*Error:\s/.test(l));
        const why = i >= 0 ? own.slice(i).filter((l) => !/^\s*(Test|Error Trace):\s/.test(l)) : own.slice(-3);
        failed.set(current, why.map((l) => l.trim()).slice(0, 8));
      }
      continue;
    }
    if (current && line.trim()) {
      const own = lines.get(current) ?? [];
      own.push(line);
      lines.set(current, own);
    }
  }
  return failed;
}

/**
 * The outcome of each test of the suite (its short name: subtests left out) from its `go test -v`
 * output. The report counts only the tests whose features all belong to the profile: the mesh
 * tests that also need an HTTPRoute feature (MeshConsumerRoute, MeshFrontend,
 * MeshFrontendHostname, MeshPorts) run but are in no profile's report.
 */
export function outcomesOf(output: string): Map<string, 'PASS' | 'FAIL' | 'SKIP'> {
  const out = new Map<string, 'PASS' | 'FAIL' | 'SKIP'>();
  for (const m of output.matchAll(/^\s*--- (PASS|FAIL|SKIP): TestConformance\/([^\s/]+) /gm))
    out.set(m[2]!, m[1] as 'PASS' | 'FAIL' | 'SKIP');
  return out;
}

/** One line per profile: "MESH-HTTP: core success (12 passed, 0 failed, 0 skipped); extended …". */
export function summary(report: ConformanceReport): string[] {
  const s = (st: Status) =>
    `${st.result} (${st.statistics.Passed} passed, ${st.statistics.Failed} failed, ${st.statistics.Skipped} skipped)`;
  return (report.profiles ?? []).map(
    (p) => `${p.name}: core ${s(p.core)}${p.extended ? `; extended ${s(p.extended)}` : ''}`,
  );
}

/** Markdown of a run's failing tests with their messages (for the developers of the features). */
export function failuresMarkdown(run: ConformanceRun): string {
  const out = [
    `# Gateway API conformance: failing tests (${new Date().toISOString()})`,
    '',
    ...summary(run.report).map((l) => `- ${l}`),
    '',
  ];
  for (const [name, why] of [...run.failures].sort(([a], [b]) => a.localeCompare(b))) {
    out.push(`## ${name}`, '', '```', ...why, '```', '');
  }
  return `${out.join('\n')}\n`;
}

/** Runs the suite's binary, streaming its progress to `log`; resolves with its exit code and output. */
function runSuite(
  bin: string,
  args: string[],
  kubeconfig: string,
  log: (l: string) => void,
  logFile?: string,
) {
  const file = logFile ? createWriteStream(logFile) : undefined;
  const child: ChildProcess = spawn(bin, args, {
    env: { ...process.env, KUBECONFIG: kubeconfig },
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: tmpdir(),
  });
  const chunks: string[] = [];
  const onLine = (line: string) => {
    chunks.push(line);
    file?.write(`${line}\n`);
    const m = /^\s*(?:=== RUN|--- (PASS|FAIL|SKIP):)\s+TestConformance\/(\S+)(.*)$/.exec(line);
    if (m) log(`[conformance] ${m[1] ?? 'RUN '} ${m[2]}${m[3] ?? ''}`);
    else if (/Test Setup:|^(FAIL|PASS|ok)\b/.test(line.trim())) log(`[conformance] ${line.trim()}`);
  };
  createInterface({ input: child.stdout! }).on('line', onLine);
  createInterface({ input: child.stderr! }).on('line', onLine);
  return new Promise<{ code: number; output: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      file?.end();
      resolve({ code: code ?? 1, output: chunks.join('\n') });
    });
  });
}

/** The whole run: cluster, images, CRDs, Weft, the suite, the report, the cleanup. */
export async function runConformance(o: ConformanceOptions = {}): Promise<ConformanceRun> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const profiles = o.profiles ?? DEFAULT_PROFILES;
  // The suite runs in a temporary directory: a relative --report is the caller's.
  const reportPath = resolve(o.report ?? DEFAULT_REPORT);
  const t0 = Date.now();
  // Built before the cluster starts: the lock is not held while Go compiles.
  const bin = suiteBinary();
  const archives = conformanceImages(profiles, log);
  buildImages();
  log(`[conformance] suite and images built in ${Date.now() - t0} ms`);

  const cleanups: (() => Promise<void> | void)[] = [];
  const running = readState();
  let kubeconfig: string;
  let kubectlBin: string;
  try {
    if (running?.realNode) {
      log(`[conformance] using the running cluster:up cluster at ${running.server}`);
      o.onLocked?.();
      const realNode = running.realNode;
      kubeconfig = running.kubeconfigPath;
      kubectlBin = join(
        execFileSync('bash', [join(root, 'hack/build-control-plane.sh'), '--print'], {
          encoding: 'utf8',
        }).trim(),
        'kubectl',
      );
      for (const a of [...archives, join(root, 'dist', 'images', 'weft.oci.tar')])
        importIntoNode(realNode, a);
    } else {
      const release = await lockRealCluster(log);
      cleanups.push(release);
      o.onLocked?.();
      const dir = mkdtempSync(OWN_CLUSTER.dir);
      noteRealClusterDir(dir);
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      const node = await startRealNode({
        dir,
        bridge: OWN_CLUSTER.bridge,
        podCIDR: POD_CIDR,
        serviceCIDR: SERVICE_CIDR,
        log,
      });
      cleanups.push(async () => {
        // Every pod of the suite still runs: killed, not deleted one by one through the API (29 s
        // of a run); the test file's leftovers check covers this stop.
        const r = await node.stop({ graceful: false });
        if (r.nftTablesLeft.length) log(`[conformance] nf_tables left: ${r.nftTablesLeft.join(', ')}`);
      });
      kubeconfig = node.kubeconfigPath;
      kubectlBin = node.kubectl;
      for (const a of archives) node.importImage(a);
    }
    const kubectl = (...args: string[]) =>
      execFileSync(kubectlBin, ['--kubeconfig', kubeconfig, ...args], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    const kubectlApply = (obj: object) =>
      execFileSync(kubectlBin, ['--kubeconfig', kubeconfig, 'apply', '-f', '-'], {
        input: JSON.stringify(obj),
        encoding: 'utf8',
        stdio: ['pipe', 'pipe', 'pipe'],
      });
    // On a cluster of cluster:up, what this run adds is removed at the end; its own node goes whole.
    const existing = running?.realNode !== undefined;
    const hadWeft =
      existing &&
      kubectl('get', 'deployment', 'weft-operator', '-n', WEFT_NAMESPACE, '--ignore-not-found').trim();
    // With the Gateway API CRDs (standard channel, hack/gateway-api.ts) when none are installed.
    const { gatewayApiApplied } = await installWeft({ kubeconfig, kubectl: kubectlBin, log });
    if (existing && gatewayApiApplied) cleanups.push(() => removeGatewayApiCrds(kubectl));
    if (existing && !hadWeft) {
      cleanups.push(() => {
        execFileSync(helmBinary(), [
          '--kubeconfig',
          kubeconfig,
          'uninstall',
          'weft',
          '-n',
          WEFT_NAMESPACE,
          '--wait',
        ]);
        kubectl('delete', 'namespace', WEFT_NAMESPACE, '--ignore-not-found');
      });
    }

    // The suite deletes its own namespaces; a namespace it left (a failed setup) goes too.
    if (existing) {
      cleanups.push(
        () =>
          void kubectl(
            'delete',
            'namespace',
            '-l',
            'gateway-conformance',
            '--ignore-not-found',
            '--wait=true',
          ),
      );
    }
    if (profiles.some((p) => p.startsWith('GATEWAY-'))) {
      kubectlApply(conformanceGatewayClass());
      if (existing)
        cleanups.push(
          () => void kubectl('delete', 'gatewayclass', CONFORMANCE_GATEWAY_CLASS, '--ignore-not-found'),
        );
    }
    mkdirSync(dirname(reportPath), { recursive: true });
    const args = [...suiteArgs(profiles, reportPath, o.runTest), ...(o.extraArgs ?? [])];
    log(`[conformance] ${bin} ${args.join(' ')}`);
    const t1 = Date.now();
    const { code, output } = await runSuite(bin, args, kubeconfig, log, o.logFile);
    log(`[conformance] the suite ran in ${Date.now() - t1} ms (exit ${code})`);
    if (!existsSync(reportPath)) {
      throw new ConformanceError(
        'WEFT_CONFORMANCE_BUILD',
        `the suite wrote no report to ${reportPath}; its output:\n${output.split('\n').slice(-30).join('\n')}`,
      );
    }
    const report = load(readFileSync(reportPath, 'utf8')) as ConformanceReport;
    return {
      report,
      reportPath,
      failures: failuresOf(output),
      outcomes: outcomesOf(output),
      exitCode: code,
      durationMs: Date.now() - t0,
    };
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (err) {
        log(`[conformance] cleanup: ${(err as Error).message}`);
      }
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    const o = parseArgs(process.argv.slice(2));
    const run = await runConformance(o);
    for (const l of summary(run.report)) console.log(l);
    console.log(`report: ${run.reportPath}; ${Math.round(run.durationMs / 1000)} s in all`);
    if (o.failuresFile) writeFileSync(o.failuresFile, failuresMarkdown(run));
    process.exitCode = run.exitCode;
  } catch (err) {
    console.error((err as Error).message);
    process.exitCode = 2;
  }
}
