// `weftctl dashboard` as a user runs it (its own process, on a loopback port the OS picks) and
// the page opened in headless Chromium (Debian's, driven by playwright-core): for the browser
// tests against the real apiserver and the real node. close() stops both.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { repoRoot } from './cluster.ts';

export interface OpenDashboard {
  page: Page;
  url: string;
  close(): Promise<void>;
}

/** The chromium binary, with the command that installs it when it is missing. */
export function chromiumPath(): string {
  try {
    return execFileSync('which', ['chromium'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('chromium is not installed: apt-get install -y chromium (hack/apt-packages.txt)');
  }
}

export async function openDashboard(kubeconfig: string, args: string[] = []): Promise<OpenDashboard> {
  const child: ChildProcess = spawn(
    process.execPath,
    [join(repoRoot, 'cli', 'main.ts'), '--kubeconfig', kubeconfig, 'dashboard', '--port', '0', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let browser: Browser | undefined;
  const close = async () => {
    await browser?.close();
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      let err = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d;
        const m = /on (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.stderr!.on('data', (d: Buffer) => (err += d));
      child.once('exit', (code) => reject(new Error(`weftctl dashboard exited ${code}: ${err}`)));
    });
    browser = await chromium.launch({
      executablePath: chromiumPath(),
      headless: true,
      args: ['--no-sandbox'],
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(url);
    return { page, url, close };
  } catch (e) {
    await close();
    throw e;
  }
}
