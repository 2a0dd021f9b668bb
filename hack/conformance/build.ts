// What the upstream Gateway API conformance suite needs, built here from pinned Go modules
// without Docker or a registry (docs/gateway-api.md, "Conformance"):
//   - the suite itself, one test binary (hack/conformance: conformance_test.go calls the suite's
//     own entry point; go.mod pins sigs.k8s.io/gateway-api/conformance);
//   - the images its manifests name, under the very references they use (imagePullPolicy
//     IfNotPresent: the node has them, nothing is pulled):
//       echo-advanced (mesh profiles) = Istio's echo `server` (the entrypoint) and `client` (the
//         suite runs it through `kubectl exec`), from hack/conformance/echo-advanced's pins, with
//         the certificate and key Istio's own echo image carries (/cert.crt, /cert.key, from the
//         module's tests/testdata/certs/dns);
//       echo-basic (gateway profiles) = the conformance module's echo-basic/;
//       coredns (gateway profiles: the base manifests run it for the UDPRoute tests, and every
//         pod of the base must be ready) = CoreDNS at the tag the manifests name
//         (hack/conformance/coredns's pins).
// Static Go binaries (CGO off, -trimpath) in one-layer images (hack/node/images.ts): the same
// pins give the same layer digest. Binaries and archives are cached under Weft's cache.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CodedError } from '../../api/errors.ts';
import { goTool } from '../lib/go-tool.ts';
import { ensureImage, type ImageSpec } from '../node/images.ts';

const here = import.meta.dirname;
export const SUITE_PINS = here;
export const ECHO_ADVANCED_PINS = join(here, 'echo-advanced');
export const COREDNS_PINS = join(here, 'coredns');

export type Profile = 'MESH-HTTP' | 'MESH-GRPC' | 'GATEWAY-HTTP';
export const PROFILES: readonly Profile[] = ['MESH-HTTP', 'MESH-GRPC', 'GATEWAY-HTTP'];

export class ConformanceError extends CodedError<'WEFT_CONFORMANCE_SETTING' | 'WEFT_CONFORMANCE_BUILD'> {}

function cacheDir(): string {
  return process.env.WEFT_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'weft');
}

/** The version hack/conformance/go.mod pins for `module`. */
export function pinnedVersion(module: string, pins = SUITE_PINS): string {
  const gomod = readFileSync(join(pins, 'go.mod'), 'utf8');
  const m = new RegExp(`^\\s*(?:require\\s+)?${module.replace(/[.]/g, '\\.')} (v\\S+)`, 'm').exec(gomod);
  if (!m) throw new ConformanceError('WEFT_CONFORMANCE_BUILD', `${pins}/go.mod does not require ${module}`);
  return m[1]!;
}

/** Where Go keeps `module`@`version` (downloaded when missing). */
export function moduleDir(module: string, version: string, pins = SUITE_PINS): string {
  const out = execFileSync('go', ['mod', 'download', '-json', `${module}@${version}`], {
    cwd: pins,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return (JSON.parse(out) as { Dir: string }).Dir;
}

/** The suite's test binary (`go test -c` of hack/conformance). */
export function suiteBinary(): string {
  return goTool('conformance.test', 'weft.dev/conformance', SUITE_PINS);
}

/** The image references the manifests of `profile` name (the suite's own manifests). */
export function manifestImages(profile: Profile): string[] {
  const dir = moduleDir(
    'sigs.k8s.io/gateway-api/conformance',
    pinnedVersion('sigs.k8s.io/gateway-api/conformance'),
  );
  const file = profile.startsWith('MESH-') ? 'mesh/manifests.yaml' : 'base/manifests.yaml';
  const yaml = readFileSync(join(dir, file), 'utf8');
  return [...new Set([...yaml.matchAll(/^\s*image:\s*(\S+)\s*$/gm)].map((m) => m[1]!))].sort();
}

function echoAdvanced(ref: string): ImageSpec {
  const server = goTool('server', 'istio.io/istio/pkg/test/echo/cmd/server', ECHO_ADVANCED_PINS);
  const client = goTool('client', 'istio.io/istio/pkg/test/echo/cmd/client', ECHO_ADVANCED_PINS);
  const istio = moduleDir(
    'istio.io/istio',
    pinnedVersion('istio.io/istio', ECHO_ADVANCED_PINS),
    ECHO_ADVANCED_PINS,
  );
  const certs = join(istio, 'tests', 'testdata', 'certs', 'dns');
  return {
    ref,
    entrypoint: ['/usr/local/bin/server'],
    fill: (rootfs) => {
      mkdirSync(join(rootfs, 'usr', 'local', 'bin'), { recursive: true });
      mkdirSync(join(rootfs, 'tmp'));
      chmodSync(join(rootfs, 'tmp'), 0o1777);
      for (const [src, dst, mode] of [
        [server, 'usr/local/bin/server', 0o755],
        [client, 'usr/local/bin/client', 0o755],
        [join(certs, 'cert-chain.pem'), 'cert.crt', 0o644],
        [join(certs, 'key.pem'), 'cert.key', 0o644],
      ] as const) {
        copyFileSync(src, join(rootfs, dst));
        chmodSync(join(rootfs, dst), mode);
      }
    },
  };
}

/** An image of one static Go binary `/<name>`, its entrypoint, built from `pins`. */
function oneBinary(ref: string, name: string, pkg: string, pins: string): ImageSpec {
  const bin = goTool(name, pkg, pins);
  return {
    ref,
    entrypoint: [`/${name}`],
    fill: (rootfs) => {
      copyFileSync(bin, join(rootfs, name));
      chmodSync(join(rootfs, name), 0o755);
    },
  };
}

/** How an image reference of the manifests is built here. */
function imageSpec(ref: string): { spec: ImageSpec; pins: string } {
  const repo = ref.slice(0, ref.lastIndexOf(':'));
  if (repo === 'registry.k8s.io/gateway-api/echo-advanced')
    return { spec: echoAdvanced(ref), pins: ECHO_ADVANCED_PINS };
  if (repo === 'registry.k8s.io/gateway-api/echo-basic')
    return {
      spec: oneBinary(ref, 'echo-basic', 'sigs.k8s.io/gateway-api/conformance/echo-basic', SUITE_PINS),
      pins: SUITE_PINS,
    };
  if (
    repo === 'registry.k8s.io/coredns/coredns' &&
    ref.endsWith(`:${pinnedVersion('github.com/coredns/coredns', COREDNS_PINS)}`)
  )
    return {
      spec: oneBinary(ref, 'coredns', 'github.com/coredns/coredns', COREDNS_PINS),
      pins: COREDNS_PINS,
    };
  throw new ConformanceError(
    'WEFT_CONFORMANCE_BUILD',
    `the suite's manifests name ${ref}, which hack/conformance/build.ts does not build yet: add it to imageSpec()`,
  );
}

/**
 * The OCI archives of every image the manifests of `profiles` name, built when missing (cached
 * by reference and pins). Returns their paths, to import into the node.
 */
export function conformanceImages(profiles: readonly Profile[], log: (l: string) => void): string[] {
  const refs = [...new Set(profiles.flatMap(manifestImages))].sort();
  return refs.map((ref) => {
    const t0 = Date.now();
    const { spec, pins } = imageSpec(ref);
    const key = createHash('sha256')
      .update(readFileSync(join(pins, 'go.sum')))
      .digest('hex')
      .slice(0, 12);
    const name = `${ref.replace(/[^A-Za-z0-9.-]+/g, '_')}-${key}`;
    const archive = ensureImage(spec, join(cacheDir(), 'conformance-images'), name);
    log(`[conformance] image ${ref}: ${archive} (${Date.now() - t0} ms)`);
    return archive;
  });
}
