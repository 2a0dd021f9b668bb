// hack/go-tool.sh from TypeScript: a Go command-line tool built once into Weft's cache (from
// pinned module graph `pins` when given), its path returned. The build's output goes to stderr.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

const script = join(import.meta.dirname, '..', 'go-tool.sh');

/** goTool('kstatus', 'weft.dev/kstatus', 'hack/kstatus') → the built binary's path. */
export function goTool(name: string, pkg: string, pins?: string): string {
  return execFileSync('bash', [script, name, pkg, ...(pins ? [pins] : [])], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}
