#!/usr/bin/env node
// weft-proxy standalone: `node proxy/main.ts [flags]`, the same as `weft proxy` (proxy/command.ts).
import { proxyCommand } from './command.ts';

await proxyCommand('weft-proxy').parseAsync(process.argv);
