// weftctl split: drive and watch a TrafficSplit's canary progression. The commands write the
// annotation the operator acts on (weft.dev/progression: <verb>@<time>), never spec or status;
// `split status` shows the progression with the figures the proxies observed against its gates.
import type { Command } from 'commander';
import { Option } from 'commander';
import {
  PROGRESSION_ANNOTATION,
  PROGRESSION_COMMANDS,
  type ProgressionFigures,
  type TrafficSplit,
} from '../api/index.ts';
import { type KubeClient, type KubeObject, RESOURCES } from '../kube/client.ts';

type Split = KubeObject & TrafficSplit;

const WHAT: Record<(typeof PROGRESSION_COMMANDS)[number], string> = {
  promote: 'send the canary 100 % now and end the progression',
  abort: 'send the canary 0 % now and end the progression (rolled back)',
  pause: 'hold the current step until resumed',
  resume: 'continue a paused progression (its step starts again)',
};

const fig = (f: ProgressionFigures | undefined) =>
  f
    ? `${f.requests} req, ${f.successRate === undefined ? '-' : `${f.successRate} %`} ok, ${f.latencyMs === undefined ? '-' : `≤ ${f.latencyMs} ms`}`
    : '-';

/** The progression as text: where it is, the observed figures against the gates, the decisions. */
export function renderProgression(s: Split): string {
  const p = s.spec.progression;
  const ns = s.metadata.namespace ?? '';
  if (!p) return `${ns}/${s.metadata.name}: no spec.progression\n`;
  const st = s.status?.progression;
  const lines = [`TrafficSplit ${ns}/${s.metadata.name}: canary ${p.canary}`];
  if (!st) {
    lines.push('  not started yet (the operator has not reconciled it)');
    return `${lines.join('\n')}\n`;
  }
  lines.push(`  phase:    ${st.phase}, step ${st.step + 1}, canary at ${st.canaryWeight} %`);
  if (st.message) lines.push(`  now:      ${st.message}`);
  const g = p.gates ?? {};
  const gates = [
    `≥ ${g.minRequests ?? 10} requests`,
    g.minSuccessRate === undefined ? undefined : `success ≥ ${g.minSuccessRate} %`,
    g.maxLatency ? `p${g.maxLatency.percentile ?? 99} ≤ ${g.maxLatency.threshold}` : undefined,
  ].filter(Boolean);
  lines.push(`  gates:    ${gates.join(', ')} per step of ${p.interval ?? '1m'}`);
  lines.push(`  canary:   ${fig(st.observed?.canary)}`);
  lines.push(`  stable:   ${fig(st.observed?.stable)}`);
  if (st.observed) lines.push(`  observed: ${st.observed.at}`);
  if (st.history?.length) {
    lines.push('  history:');
    for (const h of st.history)
      lines.push(
        `    ${h.time}  ${h.decision.padEnd(10)} ${String(h.canaryWeight).padStart(3)} %  ${h.message}`,
      );
  }
  return `${lines.join('\n')}\n`;
}

/** Sets the command annotation; the time makes the same verb given twice a new command. */
export async function sendCommand(
  client: KubeClient,
  namespace: string,
  name: string,
  verb: (typeof PROGRESSION_COMMANDS)[number],
  now = new Date(),
): Promise<void> {
  const s = await client.get<Split>(RESOURCES.trafficSplits, name, namespace);
  if (!s.spec.progression)
    throw new Error(`TrafficSplit ${namespace}/${name} has no spec.progression: nothing to ${verb}`);
  await client.apply(
    RESOURCES.trafficSplits,
    {
      metadata: {
        name,
        namespace,
        annotations: { [PROGRESSION_ANNOTATION]: `${verb}@${now.toISOString()}` },
      },
    },
    { fieldManager: 'weftctl' },
  );
}

export function splitCommands(cmd: Command, clientOf: () => KubeClient, out: (s: string) => void): void {
  const split = cmd.command('split').description("a TrafficSplit's canary progression");
  for (const verb of PROGRESSION_COMMANDS)
    split
      .command(`${verb} <name>`)
      .description(WHAT[verb])
      .option('-n, --namespace <ns>', 'namespace', 'default')
      .action(async (name: string, o: { namespace: string }) => {
        await sendCommand(clientOf(), o.namespace, name, verb);
        out(
          `trafficsplit ${o.namespace}/${name}: ${verb} requested (annotation ${PROGRESSION_ANNOTATION})\n`,
        );
      });
  split
    .command('status <name>')
    .description('the progression: step, weight, observed figures against the gates, decisions')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .option('-w, --watch', 'refresh every 2 s until the progression ends')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (name: string, o: { namespace: string; watch?: boolean; output: string }) => {
      for (;;) {
        const s = await clientOf().get<Split>(RESOURCES.trafficSplits, name, o.namespace);
        out(
          o.output === 'json'
            ? `${JSON.stringify(s.status?.progression ?? null, null, 2)}\n`
            : renderProgression(s),
        );
        const phase = s.status?.progression?.phase;
        if (!o.watch || phase === 'Promoted' || phase === 'RolledBack') return;
        await new Promise((r) => setTimeout(r, 2000));
        if (o.output === 'text') out('\n');
      }
    });
}
