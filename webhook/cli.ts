// `weft webhook`: runs the admission webhook until SIGTERM/SIGINT. cmd/weft.ts adds this
// command to the `weft` binary; `node webhook/cli.ts` runs it alone.
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import pino from 'pino';
import { SimpleKubeConfig } from '../kube/kubeconfig.ts';
import { onShutdown } from '../kube/shutdown.ts';
import { WEBHOOK_ERROR_CODES, WebhookError } from './errors.ts';
import { WEBHOOK_NAMES } from './manifests.ts';
import { DEFAULT_TLS_SECRET, startWebhook } from './server.ts';

const env = process.env;

export function webhookCommand(): Command {
  return new Command('webhook')
    .description('Run the admission webhook: sidecar injection and validation of Weft resources')
    .option(
      '--namespace <ns>',
      "Weft's namespace (never injected; holds the TLS Secret)",
      env.WEFT_NAMESPACE ?? 'weft-system',
    )
    .option('--port <n>', 'HTTPS port', env.WEFT_WEBHOOK_PORT ?? '9443')
    .option('--host <addr>', 'listen address', '0.0.0.0')
    .addOption(
      new Option('--tls <mode>', 'serving certificate source')
        .choices(['bootstrap', 'cert-manager'])
        .default('bootstrap'),
    )
    .option('--tls-secret <name>', 'Secret holding the serving certificate', DEFAULT_TLS_SECRET)
    .option(
      '--mutating-configuration <name>',
      'MutatingWebhookConfiguration whose caBundle to keep current',
      WEBHOOK_NAMES.mutatingConfiguration,
    )
    .option(
      '--validating-configuration <name>',
      'ValidatingWebhookConfiguration whose caBundle to keep current',
      WEBHOOK_NAMES.validatingConfiguration,
    )
    .option('--kubeconfig <path>', 'kubeconfig (default: KUBECONFIG, then in-cluster, then ~/.kube/config)')
    .option('--log-level <level>', 'trace, debug, info, warn, error', env.WEFT_LOG_LEVEL ?? 'info')
    .action(async (o: Record<string, string>) => {
      const log = pino({ level: o.logLevel });
      const port = Number(o.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535)
        throw new WebhookError(WEBHOOK_ERROR_CODES.CONFIG, `--port ${o.port} is not a port number`);
      const kc = SimpleKubeConfig.load(o.kubeconfig, process.env, { exec: true });
      // Signals are handled from the start: the server answers before startWebhook returns.
      const starting = startWebhook({
        kubeConfig: kc,
        namespace: o.namespace!,
        port,
        host: o.host!,
        logger: log,
        tls:
          o.tls === 'cert-manager'
            ? { mode: 'cert-manager', secretName: o.tlsSecret! }
            : {
                mode: 'bootstrap',
                secretName: o.tlsSecret!,
                webhookConfigurations: {
                  mutating: [o.mutatingConfiguration!],
                  validating: [o.validatingConfiguration!],
                },
              },
      });
      onShutdown(async () => (await starting).stop(), log);
      await starting;
    });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await webhookCommand().parseAsync(process.argv);
}
