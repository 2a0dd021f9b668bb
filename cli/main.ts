#!/usr/bin/env node
// weftctl: look at and explain the mesh.
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import * as yaml from 'js-yaml';
import {
  type AuthorizationPolicy,
  type MeshSpec,
  PATH_NORMALIZATIONS,
  type PathNormalization,
} from '../api/index.ts';
import { KubeClient, type KubeObject, RESOURCES } from '../kube/client.ts';
import { SimpleKubeConfig } from '../kube/kubeconfig.ts';
import { clusterChecks, renderResult, runChecks } from './checks.ts';
import { serveDashboard } from './dashboard.ts';
import {
  explain,
  type LiveEnds,
  parseLabels,
  renderEnds,
  renderExplanation,
  resolveEnds,
} from './explain.ts';
import { injectYaml, readManifests, renderInjectReport } from './inject.ts';
import { meshedPods, resolvePod } from './pods.ts';
import { proxyChecks } from './proxychecks.ts';
import { diffConfigs, fetchApplied, operatorConfig, renderApplied, renderDiff } from './proxyconfig.ts';
import { splitCommands } from './split.ts';
import { computeStats, type GroupBy, renderStats, type Scrape, scrape } from './stats.ts';
import { collectStatus, renderStatus } from './status.ts';

/** Exit codes: 0 fine; 1 an error (or a failed check); 2 bad usage (commander); 3 the answer is no (DENY, configs differ, inject refused). */
export const EXIT = { ok: 0, error: 1, usage: 2, no: 3 } as const;

/** Parses "30s", "5m", "2h", "1d" or plain seconds into milliseconds. */
export function parseDuration(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new Error(`${flag}: "${text}" is not a duration such as 10s, 5m, 24h`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 's']!;
  return Number(m[1]) * unit;
}

type MeshObj = KubeObject & { spec?: MeshSpec };
const OUTPUT = () =>
  new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text');

export function program(
  out: (s: string) => void = (s) => process.stdout.write(s),
  err: (s: string) => void = (s) => process.stderr.write(s),
): Command {
  const cmd = new Command('weftctl')
    .description('Look at and explain the Weft service mesh')
    .option('--kubeconfig <path>', 'kubeconfig file')
    // Usage errors throw (every subcommand inherits this): the entry point exits 2 for them.
    .exitOverride();
  // One client per run, made when a command first needs the cluster, closed when it ends.
  let client: KubeClient | undefined;
  const clientOf = () =>
    (client ??= new KubeClient(
      SimpleKubeConfig.load(cmd.opts<{ kubeconfig?: string }>().kubeconfig, process.env, { exec: true }),
      'weftctl',
    ));
  cmd.hook('postAction', () => {
    client?.close();
    client = undefined;
  });

  cmd
    .command('check')
    .description('check that Weft is installed and healthy, with a hint for each failure')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .option('--wait <seconds>', 'retry failing checks for this long', '0')
    .option(
      '--proxy',
      'also check the data plane: sidecar versions, applied configuration, certificates, pods without a sidecar',
    )
    .option(
      '--cert-warn <duration>',
      'with --proxy: fail when a workload certificate expires within this',
      '1h',
    )
    .option('--mesh-namespace <ns>', "Weft's own namespace", 'weft-system')
    .action(
      async (o: {
        output: string;
        wait: string;
        proxy?: boolean;
        certWarn: string;
        meshNamespace: string;
      }) => {
        const checks = clusterChecks(clientOf());
        if (o.proxy)
          checks.push(
            ...proxyChecks(clientOf(), {
              certWarnMs: parseDuration('--cert-warn', o.certWarn),
              meshNamespace: o.meshNamespace,
            }),
          );
        const results = await runChecks(checks, {
          deadlineMs: Number(o.wait) * 1000,
          onResult: (r) => o.output === 'text' && out(renderResult(r)),
        });
        const failed = results.filter((r) => !r.ok && !r.warning).length;
        if (o.output === 'json') out(`${JSON.stringify({ success: failed === 0, results }, null, 2)}\n`);
        else out(failed ? `\n${failed} check(s) failed\n` : '\nStatus check results are √\n');
        process.exitCode = failed ? 1 : 0;
      },
    );

  cmd
    .command('status')
    .description('every Weft resource with its Ready condition and reason')
    .option('-n, --namespace <ns>', 'only this namespace')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (o: { namespace?: string; output: string }) => {
      const rows = await collectStatus(clientOf(), o.namespace);
      out(o.output === 'json' ? `${JSON.stringify(rows, null, 2)}\n` : renderStatus(rows));
    });

  splitCommands(cmd, clientOf, out);

  const authz = cmd.command('authz').description('authorization tools');
  authz
    .command('explain')
    .description('the decision the proxy would make for a request, and which policy and rule made it')
    .option('-n, --namespace <ns>', 'namespace of the destination workload', 'default')
    .option(
      '--to <pod|deploy/name|svc/name>',
      'the destination, read live: its namespace, labels and (target) port',
    )
    .option(
      '--from <pod|deploy/name>',
      "the caller, read live: its identity (its ServiceAccount's, when it has a sidecar) and IP",
    )
    .option('--from-namespace <ns>', 'namespace of --from (default: --namespace)')
    .option('--labels <k=v,...>', 'labels of the destination pod (without --to)', '')
    .option('--principal <id>', 'caller identity, e.g. cluster.local/ns/shop/sa/web (absent: plaintext)')
    .option('--source-ip <ip>', 'caller IP', '10.0.0.1')
    .option('--port <port>', 'destination port (required without --to)')
    .option('--method <method>', 'HTTP method (absent: a TCP connection)')
    .option('--path <path>', 'HTTP path', '/')
    .option('--host <host>', 'HTTP host', '')
    .option('-H, --header <name:value...>', 'HTTP request headers')
    .option('-f, --file <policies.yaml...>', 'read AuthorizationPolicies from files instead of the cluster')
    .addOption(
      new Option('--default <action>', 'the Mesh default when no ALLOW policy applies').choices([
        'ALLOW',
        'DENY',
      ]),
    )
    .addOption(
      new Option(
        '--path-normalization <mode>',
        "the Mesh's pathNormalization the path is normalized by (default: the Mesh's, else BASE)",
      ).choices([...PATH_NORMALIZATIONS]),
    )
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (o: Record<string, string | string[] | undefined>) => {
      if (!o.to && !o.port) throw new Error('--port: required without --to (the destination port)');
      let policies: AuthorizationPolicy[];
      let defaultAction = o.default as 'ALLOW' | 'DENY' | undefined;
      let pathNormalization = o.pathNormalization as PathNormalization | undefined;
      if (o.file) {
        policies = (o.file as string[]).flatMap((f) =>
          (yaml.loadAll(readFileSync(f, 'utf8')) as AuthorizationPolicy[]).filter(
            (d) => d?.kind === 'AuthorizationPolicy',
          ),
        );
      } else {
        const client = clientOf();
        policies = (
          await client.list<KubeObject & AuthorizationPolicy>(RESOURCES.authorizationPolicies, {
            namespace: o.namespace as string,
          })
        ).items;
        if (!defaultAction || !pathNormalization) {
          try {
            const mesh = await client.get<
              KubeObject & {
                spec?: {
                  defaults?: { authorization?: 'ALLOW' | 'DENY' };
                  pathNormalization?: { normalization?: PathNormalization };
                };
              }
            >(RESOURCES.meshes, 'default');
            defaultAction ??= mesh.spec?.defaults?.authorization;
            pathNormalization ??= mesh.spec?.pathNormalization?.normalization;
          } catch {}
        }
      }
      let ends: LiveEnds | undefined;
      if (o.to) {
        let trustDomain = 'cluster.local';
        try {
          trustDomain =
            (await clientOf().get<MeshObj>(RESOURCES.meshes, 'default')).spec?.trustDomain ?? trustDomain;
        } catch {}
        ends = await resolveEnds(clientOf(), {
          ...(o.from ? { from: o.from as string } : {}),
          ...(o.fromNamespace ? { fromNamespace: o.fromNamespace as string } : {}),
          to: o.to as string,
          namespace: o.namespace as string,
          ...(o.port ? { port: Number(o.port) } : {}),
          trustDomain,
        });
        if (!o.file && ends.to.namespace !== o.namespace) {
          // The destination's own namespace decides (pods named as ns/...): its policies.
          policies = (
            await clientOf().list<KubeObject & AuthorizationPolicy>(RESOURCES.authorizationPolicies, {
              namespace: ends.to.namespace,
            })
          ).items;
        }
      }
      const port = ends?.to.port ?? Number(o.port);
      if (!Number.isInteger(port) || port < 1 || port > 65535)
        throw new Error(
          `--port: give the destination port (${ends ? `${o.to} declares none` : `"${o.port}"`})`,
        );
      const headers: Record<string, string> = {};
      for (const h of (o.header as string[] | undefined) ?? []) {
        const i = h.indexOf(':');
        if (i <= 0) throw new Error(`--header: "${h}" is not name:value`);
        headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
      }
      const principal = ends?.from ? ends.from.principal : (o.principal as string | undefined);
      const e = explain({
        namespace: ends?.to.namespace ?? (o.namespace as string),
        labels: ends?.to.labels ?? parseLabels(o.labels as string),
        defaultAction: defaultAction ?? 'ALLOW',
        ...(pathNormalization ? { pathNormalization } : {}),
        policies,
        request: {
          ...(principal ? { principal } : {}),
          sourceIp: ends?.from?.ip ?? (o.sourceIp as string),
          port,
          ...(o.method
            ? {
                http: { method: o.method as string, path: o.path as string, host: o.host as string, headers },
              }
            : {}),
        },
      });
      out(
        o.output === 'json'
          ? `${JSON.stringify(ends ? { ...ends, ...e } : e, null, 2)}\n`
          : `${ends ? renderEnds(ends) : ''}${renderExplanation(e)}`,
      );
      process.exitCode = e.decision.allowed ? EXIT.ok : EXIT.no;
    });

  cmd
    .command('inject')
    .description(
      "add Weft's sidecar to the workloads of a YAML stream, offline, as the webhook would (output: YAML)",
    )
    .requiredOption(
      '-f, --filename <file|dir|->',
      'manifests: a file, a directory (its *.yaml, *.yml, *.json) or - for stdin',
    )
    .option(
      '--mesh-file <mesh.yaml>',
      'read the Mesh settings (proxy image, resources) from this file instead of the cluster',
    )
    .option('-n, --namespace <ns>', 'namespace of objects that name none', 'default')
    .option('--mesh-namespace <ns>', "Weft's own namespace (never injected)", 'weft-system')
    .action(async (o: { filename: string; meshFile?: string; namespace: string; meshNamespace: string }) => {
      let mesh: MeshSpec | undefined;
      if (o.meshFile) {
        const doc = (yaml.loadAll(readFileSync(o.meshFile, 'utf8')) as MeshObj[]).find(
          (d) => d?.kind === 'Mesh',
        );
        if (!doc) throw new Error(`--mesh-file ${o.meshFile}: no document of kind Mesh in it`);
        mesh = doc.spec ?? {};
      } else {
        try {
          mesh = (await clientOf().find<MeshObj>(RESOURCES.meshes, 'default'))?.spec;
        } catch (err) {
          throw new Error(
            `reading the Mesh from the cluster: ${(err as Error).message} (offline, give --mesh-file config/samples/mesh.yaml)`,
          );
        }
      }
      const docs: string[] = [];
      let refused = 0;
      for (const m of readManifests(o.filename, () => readFileSync(0, 'utf8'))) {
        const r = injectYaml(
          m.text,
          { mesh, defaultNamespace: o.namespace, meshNamespace: o.meshNamespace },
          m.name,
        );
        if (r.yaml) docs.push(r.yaml);
        for (const rep of r.reports) {
          if (rep.action === 'refused') refused++;
          if (rep.action !== 'injected' || rep.reasons.length) err(renderInjectReport(rep));
        }
      }
      out(docs.join('---\n'));
      process.exitCode = refused ? EXIT.no : EXIT.ok;
    });

  cmd
    .command('proxy-config')
    .description("the configuration a pod's proxy has applied: routes, endpoints, policies, certificate")
    .argument('<pod>', 'a pod name, or deploy/<name> (its first running pod)')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .addOption(
      new Option('-o, --output <format>', 'output format').choices(['text', 'json', 'yaml']).default('text'),
    )
    .option('--diff', 'compare with what the operator wrote for the namespace (exit 3 when they differ)')
    .action(async (ref: string, o: { namespace: string; output: string; diff?: boolean }) => {
      const client = clientOf();
      const pod = await resolvePod(client, ref, o.namespace);
      const name = `${pod.metadata.namespace}/${pod.metadata.name}`;
      const applied = await fetchApplied(client, pod).catch((e: Error) => {
        throw new Error(
          `${name}: its proxy did not answer (${e.message}); is it meshed and running? weftctl check --proxy`,
        );
      });
      if (o.diff) {
        const written = await operatorConfig(client, pod.metadata.namespace ?? o.namespace);
        const lines = diffConfigs(applied.config, written.config);
        out(
          o.output === 'text'
            ? renderDiff(lines, applied.status.version ?? 'none', written.config.version)
            : dump(o.output, {
                applied: applied.status.version ?? null,
                written: written.config.version,
                differences: lines,
              }),
        );
        process.exitCode = lines.length ? EXIT.no : EXIT.ok;
        return;
      }
      out(o.output === 'text' ? renderApplied(name, applied, Date.now()) : dump(o.output, applied));
    });

  const statCommand = (name: string, description: string) =>
    cmd
      .command(name)
      .description(description)
      .option('-n, --namespace <ns>', 'only the proxies of this namespace (default: every namespace)')
      .option('-w, --window <duration>', 'time between the two scrapes the rates come from', '10s')
      .addOption(OUTPUT());
  const window = async (ns: string | undefined, windowMs: number, by: GroupBy) => {
    const client = clientOf();
    const pods = await meshedPods(client, ns);
    const trustDomain =
      (await client.find<MeshObj>(RESOURCES.meshes, 'default'))?.spec?.trustDomain ?? 'cluster.local';
    const warn = (p: { metadata?: { name?: string } }, e: Error) =>
      err(`weftctl: ${p.metadata?.name}: metrics not read: ${e.message}\n`);
    const before: Scrape[] = await scrape(client, pods, warn);
    const t0 = Date.now();
    await sleep(windowMs);
    const after = await scrape(client, pods, warn);
    return computeStats(before, after, (Date.now() - t0) / 1000, by, pods, trustDomain);
  };
  for (const [name, by, description] of [
    [
      'stat',
      'workload',
      'success rate, requests per second and latency percentiles per workload, as its sidecars served them',
    ],
    [
      'edges',
      'edge',
      "the same per caller -> destination, with both identities, as the callers' sidecars sent them",
    ],
    [
      'routes',
      'route',
      "the same per route (TrafficSplit, HTTPRoute, GRPCRoute) with its backend Services, as the callers' sidecars sent them",
    ],
  ] as const)
    statCommand(name, description).action(
      async (o: { namespace?: string; window: string; output: string }) => {
        const rows = await window(o.namespace, parseDuration('--window', o.window), by);
        out(o.output === 'json' ? `${JSON.stringify(rows, null, 2)}\n` : renderStats(rows, by));
      },
    );
  statCommand('top', 'the busiest edges, refreshed live (Ctrl-C stops)')
    .option('--once', 'print one window and exit (scripts, tests)')
    .addOption(new Option('--by <what>', 'rows per').choices(['edge', 'workload', 'route']).default('edge'))
    .action(
      async (o: { namespace?: string; window: string; output: string; once?: boolean; by: GroupBy }) => {
        const windowMs = parseDuration('--window', o.window);
        for (;;) {
          const rows = await window(o.namespace, windowMs, o.by);
          const text = o.output === 'json' ? `${JSON.stringify(rows, null, 2)}\n` : renderStats(rows, o.by);
          // A live terminal is redrawn in place; a pipe gets one table after another.
          out(
            o.once || !process.stdout.isTTY
              ? text
              : `\x1b[H\x1b[2J${new Date().toISOString()}  every ${o.window}\n\n${text}`,
          );
          if (o.once) return;
        }
      },
    );
  cmd
    .command('dashboard')
    .description(
      'serve a local web page of the mesh: service graph, TrafficSplit weights, authorization decisions, status',
    )
    .option('-n, --namespace <ns>', 'only this namespace (default: every namespace)')
    .option('--address <ip>', 'loopback address to listen on', '127.0.0.1')
    .option('-p, --port <port>', 'port to listen on (0: any free port)', '50750')
    .option('-w, --window <duration>', 'time between the two scrapes each refresh comes from', '5s')
    .action(async (o: { namespace?: string; address: string; port: string; window: string }) => {
      const port = Number(o.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535)
        throw new Error(`--port: "${o.port}" is not a port number (0 to 65535)`);
      if (!/^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(o.address))
        throw new Error(
          `--address: "${o.address}" is not a loopback address; the page shows the mesh with your credentials, keep it on 127.0.0.1 (reach it remotely through ssh -L)`,
        );
      const windowMs = parseDuration('--window', o.window);
      if (windowMs < 1000)
        throw new Error(
          `--window: "${o.window}" is under 1s; the page reloads once a window (give 1s or more)`,
        );
      const { server, url } = await serveDashboard(clientOf(), {
        address: o.address,
        port,
        windowMs,
        ...(o.namespace ? { namespace: o.namespace } : {}),
      });
      out(`Weft dashboard on ${url} (Ctrl-C stops)\n`);
      // Served until the process is stopped (or the server closed by a test).
      await new Promise<void>((resolve) => server.once('close', resolve));
    });
  return cmd;
}

/** Runs weftctl in this process (tests): its output, errors and exit code. */
export async function runWeftctl(args: string[]): Promise<{ out: string; err: string; code: number }> {
  let out = '';
  let err = '';
  process.exitCode = 0;
  await program(
    (s) => (out += s),
    (s) => (err += s),
  )
    .exitOverride()
    .parseAsync(args, { from: 'user' });
  const code = Number(process.exitCode ?? 0);
  process.exitCode = 0;
  return { out, err, code };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function dump(format: string, v: unknown): string {
  return format === 'yaml'
    ? yaml.dump(v, { noRefs: true, lineWidth: -1 })
    : `${JSON.stringify(v, null, 2)}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  program()
    .parseAsync()
    .catch((err: Error) => {
      // Commander printed its own message (or the help, exit code 0).
      if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage);
      process.stderr.write(`weftctl: ${err.message}\n`);
      process.exit(EXIT.error);
    });
}
