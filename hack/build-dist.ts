// Builds what a container image ships: dist/weft.js, the `weft` binary as plain JavaScript
// bundled by esbuild (`npm run build`). Node then neither strips types at start nor resolves
// hundreds of files (together about 40 MB of an idle sidecar's RSS, docs/proxy.md, Memory), and
// each subcommand's code sits in its own chunk, loaded only when that subcommand runs (`weft
// proxy` does not load the operator).
// Beside it: the SO_ORIGINAL_DST and RE2 addons and iptables.sh, which the proxy finds next to its code.
//   node hack/build-dist.ts [--outdir dist]
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface DistResult {
  outdir: string;
  /** The entry: `node <entry> proxy …` runs the sidecar. */
  entry: string;
  /** Bytes of JavaScript per output file. */
  files: Record<string, number>;
}

export async function buildDist(outdir = join(ROOT, 'dist')): Promise<DistResult> {
  // Everything but images/ (the archives of hack/image/build.ts) is this build's output.
  await mkdir(outdir, { recursive: true });
  for (const f of await readdir(outdir)) if (f !== 'images') await rm(join(outdir, f), { recursive: true });
  const r = await build({
    absWorkingDir: ROOT,
    entryPoints: { weft: 'cmd/weft.ts' },
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    chunkNames: '[name]-[hash]',
    // Whitespace and syntax only: names stay, so stack traces still read.
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: 'linked',
    legalComments: 'linked',
    metafile: true,
    logLevel: 'warning',
    // Module paths (kept in the CommonJS wrappers) relative to the checkout, not to where a
    // symlinked node_modules really lives: the image's digest must not depend on the directory.
    preserveSymlinks: true,
    // Bundled CommonJS packages (pino, prom-client) call require() for Node's own modules.
    banner: {
      js: "import { createRequire as __weftRequire } from 'node:module';const require = __weftRequire(import.meta.url);",
    },
  });
  await copyFile(
    join(ROOT, 'proxy/native/build/Release/original_dst.node'),
    join(outdir, 'original_dst.node'),
  ).catch((e: Error) => {
    throw new Error(`${e.message}: build the addon first (bash proxy/native/build.sh, run by npm install)`);
  });
  // The RE2 engine's addon (api/regex.ts looks for it next to the bundled code).
  const re2Addon = join(dirname(createRequire(import.meta.url).resolve('re2')), 'build/Release/re2.node');
  await copyFile(re2Addon, join(outdir, 're2.node')).catch((e: Error) => {
    throw new Error(
      `${e.message}: build the re2 addon first (bash proxy/native/build.sh, run by npm install)`,
    );
  });
  await copyFile(join(ROOT, 'proxy/iptables.sh'), join(outdir, 'iptables.sh'));
  const files: Record<string, number> = {};
  for (const [f, o] of Object.entries(r.metafile.outputs)) if (f.endsWith('.js')) files[f] = o.bytes;
  return { outdir, entry: join(outdir, 'weft.js'), files };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--outdir');
  const r = await buildDist(i > 0 ? process.argv[i + 1] : undefined);
  const total = Object.values(r.files).reduce((a, b) => a + b, 0);
  console.log(
    `built ${r.entry} (${Object.keys(r.files).length} files, ${(total / 1024).toFixed(0)} KiB of JavaScript)`,
  );
}
