// `weft operator`: flags (each also an environment variable) → startOperator().
import { Command, Option } from 'commander';
import { durationMs } from '../api/index.ts';
import { ERROR_CODES, WeftError } from '../kube/errors.ts';
import { SimpleKubeConfig } from '../kube/kubeconfig.ts';
import { rootLogger } from '../kube/log.ts';
import { onShutdown } from '../kube/shutdown.ts';
import { startOperator } from './operator.ts';

const DURATION = /^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/;
const duration = (flag: string) => (v: string) => {
  if (!DURATION.test(v))
    throw new WeftError(ERROR_CODES.CONFIG, `${flag}: "${v}" is not a duration like 15s`);
  return durationMs(v);
};

export function operatorCommand(): Command {
  return new Command('operator')
    .description('Run the Weft operator: compiles cluster state into per-namespace proxy configuration')
    .addOption(
      new Option('--kubeconfig <path>', 'kubeconfig file (default: in-cluster, then ~/.kube/config)').env(
        'KUBECONFIG',
      ),
    )
    .addOption(
      new Option('--namespace <ns>', "the operator's own namespace (Lease; never meshed)")
        .env('POD_NAMESPACE')
        .default('weft-system'),
    )
    .addOption(
      new Option('--metrics-bind-address <addr>', 'host:port of /metrics ("0" disables)')
        .env('WEFT_METRICS_ADDRESS')
        .default(':8080'),
    )
    .addOption(
      new Option('--health-probe-bind-address <addr>', 'host:port of /healthz and /readyz ("0" disables)')
        .env('WEFT_HEALTH_ADDRESS')
        .default(':8081'),
    )
    .addOption(
      new Option('--leader-elect [bool]', 'elect a leader on a Lease so only one replica reconciles')
        .env('WEFT_LEADER_ELECT')
        .default(true),
    )
    .addOption(new Option('--no-leader-elect', 'lead at once (a single replica)'))
    .addOption(
      new Option('--leader-elect-lease-duration <d>', 'how long a lease lasts unrenewed')
        .default(15_000, '15s')
        .argParser(duration('--leader-elect-lease-duration')),
    )
    .addOption(
      new Option(
        '--leader-elect-renew-deadline <d>',
        'how long the leader tries to renew before stepping down',
      )
        .default(10_000, '10s')
        .argParser(duration('--leader-elect-renew-deadline')),
    )
    .addOption(
      new Option('--leader-elect-retry-period <d>', 'how often to try to acquire or renew')
        .default(2_000, '2s')
        .argParser(duration('--leader-elect-retry-period')),
    )
    .addOption(
      new Option(
        '--leader-elect-identity <id>',
        'this replica in the Lease (default: hostname + random)',
      ).env('POD_NAME'),
    )
    .addOption(
      new Option(
        '--root-distribution-max-wait <d>',
        'how long a root CA rotation waits for every sidecar to trust the new root before reissuing certificates from it anyway',
      )
        .env('WEFT_ROOT_DISTRIBUTION_MAX_WAIT')
        .default(600_000, '10m')
        .argParser(duration('--root-distribution-max-wait')),
    )
    .addOption(
      new Option('--cluster-domain <domain>', 'the cluster DNS domain')
        .env('WEFT_CLUSTER_DOMAIN')
        .default('cluster.local'),
    )
    .addOption(
      new Option('--log-level <level>', 'log level')
        .choices(['trace', 'debug', 'info', 'warn', 'error'])
        .env('WEFT_LOG_LEVEL')
        .default('info'),
    )
    .action(async (o: Record<string, unknown>) => {
      const log = rootLogger(String(o.logLevel));
      // Not client-node's KubeConfig: importing it costs ~45 MB of RSS (kube/kubeconfig.ts).
      const kc = SimpleKubeConfig.load(o.kubeconfig ? String(o.kubeconfig) : undefined);
      const addr = (v: unknown) => (v === '0' || v === '' ? undefined : String(v));
      const elect = o.leaderElect !== false && o.leaderElect !== 'false';
      // Signals are handled from the start: the health server answers before startOperator returns.
      const starting = startOperator({
        kubeConfig: kc,
        namespace: String(o.namespace),
        metricsAddress: addr(o.metricsBindAddress),
        healthAddress: addr(o.healthProbeBindAddress),
        clusterDomain: String(o.clusterDomain),
        identity: { rootDistributionMaxWaitMs: o.rootDistributionMaxWait as number },
        log,
        leaderElection: elect && {
          identity: o.leaderElectIdentity ? String(o.leaderElectIdentity) : undefined,
          leaseDurationMs: o.leaderElectLeaseDuration as number,
          renewDeadlineMs: o.leaderElectRenewDeadline as number,
          retryPeriodMs: o.leaderElectRetryPeriod as number,
        },
      });
      onShutdown(async () => (await starting).stop(), log);
      const op = await starting;
      log.info(
        {
          identity: op.identity,
          metricsPort: op.metricsPort,
          healthPort: op.healthPort,
          leaderElection: elect,
        },
        'weft operator started',
      );
    });
}
