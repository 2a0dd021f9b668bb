// A real proxy as a local process (`node proxy/main.ts`), for the integration tests that watch
// the apiserver with a ServiceAccount token (the config fast path): started with the flags
// given, resolved once it logged its ports; stop() kills it (SIGCONT first: a test may have
// paused it).
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './cluster.ts';

export interface ProxyProcess {
  proc: ChildProcess;
  ports: { admin: number; health: number };
  stop(): Promise<void>;
}

export async function spawnProxy(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ProxyProcess> {
  const proc = spawn(process.execPath, [join(repoRoot, 'proxy', 'main.ts'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, WEFT_LOG_LEVEL: 'info', ...env },
  });
  let stderr = '';
  const ports = await new Promise<ProxyProcess['ports']>((resolve, reject) => {
    let buf = '';
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (d: string) => {
      buf += d;
      for (const line of buf.split('\n')) {
        if (!line.includes('weft-proxy started')) continue;
        const j = JSON.parse(line) as { ports: ProxyProcess['ports'] };
        resolve(j.ports);
      }
      if (buf.length > 1_000_000) buf = buf.slice(-10_000);
    });
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (d: string) => {
      if (stderr.length < 10_000) stderr += d;
    });
    proc.once('exit', (code) => reject(new Error(`proxy exited with ${code}: ${stderr}`)));
  });
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGCONT');
    proc.kill('SIGKILL');
    await gone;
  };
  return { proc, ports, stop };
}
