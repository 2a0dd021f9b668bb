#!/usr/bin/env node
// The one Weft binary: `weft <component>`. Each subcommand lives in its component's folder;
// this file only dispatches. A subcommand's module is imported only when it runs, so the
// sidecar (`weft proxy`) does not carry the operator's or the webhook's dependencies in memory.
import { Command } from 'commander';

const COMPONENTS: Record<string, { description: string; load: () => Promise<Command> }> = {
  operator: {
    description: 'Run the Weft operator: compiles cluster state into per-namespace proxy configuration',
    load: async () => (await import('../operator/command.ts')).operatorCommand(),
  },
  webhook: {
    description: 'Run the admission webhook: sidecar injection and validation of Weft resources',
    load: async () => (await import('../webhook/cli.ts')).webhookCommand(),
  },
  proxy: {
    description: "Run the Weft sidecar proxy (as UID 1337, behind the init container's iptables rules)",
    load: async () => (await import('../proxy/command.ts')).proxyCommand(),
  },
  init: {
    description:
      "Install the iptables rules that send the pod's TCP traffic through weft-proxy (root, NET_ADMIN)",
    load: async () => (await import('../proxy/command.ts')).initCommand(),
  },
};

const program = new Command('weft').description('Weft service mesh').showHelpAfterError();
const chosen = process.argv[2];
for (const [name, c] of Object.entries(COMPONENTS)) {
  if (name === chosen) program.addCommand(await c.load());
  else program.command(name).description(c.description).allowUnknownOption().helpOption(false);
}

await program.parseAsync(process.argv);
