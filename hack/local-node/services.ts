// A minimal Service VIP path for pods without a sidecar: iptables DNAT from ClusterIP:port to a
// ready endpoint in the pod range, for traffic arriving from this node's bridge only. Meshed
// pods never use it: their sidecar resolves VIPs itself. DNATed connections are masqueraded to
// the bridge address so the reply comes back through the host (this also covers hairpin).
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { type Cidr, cidrContains, run, tryRun } from './network.ts';

export interface VipRule {
  vip: string;
  port: number;
  protocol: string;
  endpoints: { ip: string; port: number }[];
}

/** The DNAT rules for these Services, from their EndpointSlices: ready endpoints in the pod range only. */
export function vipRules(services: V1Service[], slices: V1EndpointSlice[], podCidr: Cidr): VipRule[] {
  const byService = new Map<string, V1EndpointSlice[]>();
  for (const s of slices) {
    const svc = s.metadata?.labels?.['kubernetes.io/service-name'];
    if (!svc || s.addressType !== 'IPv4') continue;
    const k = `${s.metadata!.namespace}/${svc}`;
    byService.set(k, [...(byService.get(k) ?? []), s]);
  }
  const rules: VipRule[] = [];
  for (const svc of services) {
    const vip = svc.spec?.clusterIP;
    if (!vip || vip === 'None' || svc.spec?.type === 'ExternalName') continue;
    const mine = byService.get(`${svc.metadata!.namespace}/${svc.metadata!.name}`) ?? [];
    for (const p of svc.spec?.ports ?? []) {
      const protocol = p.protocol ?? 'TCP';
      if (protocol === 'SCTP') continue;
      const endpoints: { ip: string; port: number }[] = [];
      for (const sl of mine) {
        const sp = sl.ports?.find(
          (x) => (x.name ?? '') === (p.name ?? '') && (x.protocol ?? 'TCP') === protocol,
        );
        if (!sp?.port) continue;
        for (const e of sl.endpoints ?? []) {
          if (e.conditions?.ready === false) continue;
          for (const ip of e.addresses) if (cidrContains(podCidr, ip)) endpoints.push({ ip, port: sp.port });
        }
      }
      endpoints.sort((a, b) => a.ip.localeCompare(b.ip) || a.port - b.port);
      rules.push({ vip, port: p.port, protocol, endpoints });
    }
  }
  return rules.sort(
    (a, b) => a.vip.localeCompare(b.vip) || a.port - b.port || a.protocol.localeCompare(b.protocol),
  );
}

/** iptables-restore input that replaces the Service chain with these rules. */
export function renderVipChain(chain: string, rules: VipRule[]): string {
  const lines = ['*nat', `:${chain} - [0:0]`];
  for (const r of rules) {
    const n = r.endpoints.length;
    const proto = r.protocol.toLowerCase();
    r.endpoints.forEach((e, i) => {
      const left = n - i;
      const pick = left > 1 ? ` -m statistic --mode random --probability ${(1 / left).toFixed(5)}` : '';
      lines.push(
        `-A ${chain} -d ${r.vip}/32 -p ${proto} -m ${proto} --dport ${r.port}${pick} -j DNAT --to-destination ${e.ip}:${e.port}`,
      );
    });
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

export class ServiceVips {
  readonly chain: string;
  readonly postChain: string;
  readonly #bridge: string;
  readonly #podCidr: Cidr;
  readonly #serviceCidr: Cidr;
  #last = '';
  constructor(o: { id: string; bridge: string; podCidr: Cidr; serviceCidr: Cidr }) {
    this.chain = `WEFT-LN-${o.id}-SVC`;
    this.postChain = `WEFT-LN-${o.id}-PST`;
    this.#bridge = o.bridge;
    this.#podCidr = o.podCidr;
    this.#serviceCidr = o.serviceCidr;
  }

  async setUp(): Promise<void> {
    const ipt = (...a: string[]) => run('iptables', ['-w', '5', '-t', 'nat', ...a]);
    await ipt('-N', this.chain);
    await ipt('-N', this.postChain);
    await ipt(
      '-A',
      this.postChain,
      '-s',
      this.#podCidr.text,
      '-m',
      'conntrack',
      '--ctstate',
      'DNAT',
      '-j',
      'MASQUERADE',
    );
    await ipt('-I', 'PREROUTING', '-i', this.#bridge, '-d', this.#serviceCidr.text, '-j', this.chain);
    await ipt('-I', 'POSTROUTING', '-o', this.#bridge, '-j', this.postChain);
  }

  async sync(services: V1Service[], slices: V1EndpointSlice[]): Promise<boolean> {
    const text = renderVipChain(this.chain, vipRules(services, slices, this.#podCidr));
    if (text === this.#last) return false;
    await run('iptables-restore', ['-w', '5', '--noflush'], text);
    this.#last = text;
    return true;
  }

  async tearDown(): Promise<void> {
    const ipt = (...a: string[]) => tryRun('iptables', ['-w', '5', '-t', 'nat', ...a]);
    while (
      await ipt('-D', 'PREROUTING', '-i', this.#bridge, '-d', this.#serviceCidr.text, '-j', this.chain)
    ) {}
    while (await ipt('-D', 'POSTROUTING', '-o', this.#bridge, '-j', this.postChain)) {}
    for (const c of [this.chain, this.postChain]) {
      await ipt('-F', c);
      await ipt('-X', c);
    }
  }
}
