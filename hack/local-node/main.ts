// weft local node CLI: `node hack/local-node/main.ts --kubeconfig <path>` turns a control plane
// without kubelets into a working one-node cluster until SIGINT/SIGTERM. Needs root.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { Command } from 'commander';
import pino from 'pino';
import { repoRoot } from './exec.ts';
import { startLocalNode } from './node.ts';

/** The kubeconfig of `npm run cluster:up`, when it is running. */
function clusterKubeconfig(): string | undefined {
  const state = join(process.env.WEFT_CLUSTER_DIR ?? join(repoRoot, '.cluster'), 'state.json');
  if (!existsSync(state)) return undefined;
  return (JSON.parse(readFileSync(state, 'utf8')) as { kubeconfigPath?: string }).kubeconfigPath;
}

const program = new Command('local-node')
  .description('Run the Weft local node: a one-node kubelet for the local control plane (root)')
  .option(
    '--kubeconfig <path>',
    'cluster to join (default: $KUBECONFIG, else npm run cluster:up)',
    process.env.KUBECONFIG,
  )
  .option('--name <name>', 'Node name', 'weft-local')
  .option('--pod-cidr <cidr>', 'pod range, private to this machine', '10.244.0.0/24')
  .option('--service-cidr <cidr>', "the cluster's Service range", '10.96.0.0/16')
  .option('--no-service-vips', 'do not program iptables DNAT for Service VIPs')
  .option('--state-dir <dir>', 'volumes and container logs (default: a temp directory)')
  .option('--log-level <level>', 'pino log level', process.env.WEFT_LOG_LEVEL ?? 'info')
  .parse();
const o = program.opts<{
  kubeconfig?: string;
  name: string;
  podCidr: string;
  serviceCidr: string;
  serviceVips: boolean;
  stateDir?: string;
  logLevel: string;
}>();

const kubeconfig = o.kubeconfig ?? clusterKubeconfig();
if (!kubeconfig) {
  process.stderr.write(
    'local-node: no cluster: pass --kubeconfig, set KUBECONFIG, or run `npm run cluster:up`\n',
  );
  process.exit(2);
}
const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);
try {
  const node = await startLocalNode({
    kubeConfig: kc,
    name: o.name,
    podCIDR: o.podCidr,
    serviceCIDR: o.serviceCidr,
    serviceVIPs: o.serviceVips,
    stateDir: o.stateDir,
    logger: pino({ level: o.logLevel }, pino.destination(2)),
  });
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    await node.stop();
    process.exit(0);
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
} catch (err) {
  const e = err as Error & { code?: string };
  process.stderr.write(`local-node: ${e.code ? `${e.code}: ` : ''}${e.message}\n`);
  process.exit(1);
}
