#!/usr/bin/env node
// weftctl: look at and explain the mesh.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import * as yaml from 'js-yaml';
import { type AuthorizationPolicy, PATH_NORMALIZATIONS, type PathNormalization } from '../api/index.ts';
import { KubeClient, type KubeObject, RESOURCES } from '../kube/client.ts';
import { SimpleKubeConfig } from '../kube/kubeconfig.ts';
import { clusterChecks, renderResult, runChecks } from './checks.ts';
import { explain, parseLabels, renderExplanation } from './explain.ts';
import { splitCommands } from './split.ts';
import { collectStatus, renderStatus } from './status.ts';

export function program(out: (s: string) => void = (s) => process.stdout.write(s)): Command {
  const cmd = new Command('weftctl')
    .description('Look at and explain the Weft service mesh')
    .option('--kubeconfig <path>', 'kubeconfig file');
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
    .action(async (o: { output: string; wait: string }) => {
      const results = await runChecks(clusterChecks(clientOf()), {
        deadlineMs: Number(o.wait) * 1000,
        onResult: (r) => o.output === 'text' && out(renderResult(r)),
      });
      const failed = results.filter((r) => !r.ok && !r.warning).length;
      if (o.output === 'json') out(`${JSON.stringify({ success: failed === 0, results }, null, 2)}\n`);
      else out(failed ? `\n${failed} check(s) failed\n` : '\nStatus check results are √\n');
      process.exitCode = failed ? 1 : 0;
    });

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
    .requiredOption('-n, --namespace <ns>', 'namespace of the destination workload')
    .option('--labels <k=v,...>', 'labels of the destination pod', '')
    .option('--principal <id>', 'caller identity, e.g. cluster.local/ns/shop/sa/web (absent: plaintext)')
    .option('--source-ip <ip>', 'caller IP', '10.0.0.1')
    .requiredOption('--port <port>', 'destination port')
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
      const headers: Record<string, string> = {};
      for (const h of (o.header as string[] | undefined) ?? []) {
        const i = h.indexOf(':');
        if (i <= 0) throw new Error(`--header: "${h}" is not name:value`);
        headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
      }
      const e = explain({
        namespace: o.namespace as string,
        labels: parseLabels(o.labels as string),
        defaultAction: defaultAction ?? 'ALLOW',
        ...(pathNormalization ? { pathNormalization } : {}),
        policies,
        request: {
          ...(o.principal ? { principal: o.principal as string } : {}),
          sourceIp: o.sourceIp as string,
          port: Number(o.port),
          ...(o.method
            ? {
                http: { method: o.method as string, path: o.path as string, host: o.host as string, headers },
              }
            : {}),
        },
      });
      out(o.output === 'json' ? `${JSON.stringify(e, null, 2)}\n` : renderExplanation(e));
      process.exitCode = e.decision.allowed ? 0 : 3;
    });
  return cmd;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  program()
    .parseAsync()
    .catch((err: Error) => {
      process.stderr.write(`weftctl: ${err.message}\n`);
      process.exit(1);
    });
}
