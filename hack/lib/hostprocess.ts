// A tool run as a host process by the e2e tests (Prometheus, Flagger, the OpenTelemetry
// Collector): its output in a log file, stopped with SIGTERM then SIGKILL.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { waitFor } from './control-plane.ts';

export interface HostProcess {
  url: string;
  log: string;
  stop(): Promise<void>;
}

/** Spawns `cmd` with its output in `log`; stop() ends it (SIGTERM, then SIGKILL) and waits. */
export function hostProcess(
  cmd: string,
  args: string[],
  log: string,
): ChildProcess & { halt(): Promise<void> } {
  const fd = openSync(log, 'a');
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  return Object.assign(child, {
    halt: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(kill);
    },
  });
}

/**
 * Starts `cmd` as a host process (hostProcess) and waits up to a minute for `ready`; a tool that
 * exits or never gets ready is stopped and the error names its log.
 */
export async function startHostProcess(o: {
  name: string;
  cmd: string;
  args: string[];
  log: string;
  url: string;
  ready: () => Promise<boolean>;
}): Promise<HostProcess> {
  const child = hostProcess(o.cmd, o.args, o.log);
  try {
    await waitFor(o.name, 60_000, o.ready, child, o.log);
  } catch (err) {
    await child.halt();
    throw err;
  }
  return { url: o.url, log: o.log, stop: () => child.halt() };
}
