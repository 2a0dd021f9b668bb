#!/usr/bin/env node
// The one Weft binary: `weft <component>`. Each subcommand lives in its component's folder
// and registers itself here; this file only dispatches.
import { Command } from 'commander';
import { operatorCommand } from '../operator/command.ts';
import { initCommand, proxyCommand } from '../proxy/command.ts';
import { webhookCommand } from '../webhook/cli.ts';

const program = new Command('weft').description('Weft service mesh').showHelpAfterError();
program.addCommand(operatorCommand());
program.addCommand(webhookCommand());
program.addCommand(proxyCommand());
program.addCommand(initCommand());

await program.parseAsync(process.argv);
