// Endpoints watching the tries that wait for a response head: an endpoint that leaves the config
// or is found unreachable ends them at once (Endpoints.gone), and an endpoint whose tries wait is
// probed with a connect of its own, at most once a second.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { manualClock, seededRandom } from '../clock.ts';
import { ProxyMetrics } from '../metrics.ts';
import { endpoint, proxyConfig, service } from '../testdata.ts';
import type { UpstreamAddress } from '../transport.ts';
import { Endpoints, type Picked } from './endpoints.ts';

function setup() {
  const clock = manualClock(10_000);
  const e = new Endpoints(clock.now, seededRandom(1), new ProxyMetrics(), () => {});
  const config = (...addresses: string[]) =>
    proxyConfig('shop', [
      service(
        'web',
        'shop',
        '10.96.0.10',
        80,
        addresses.map((a) => endpoint(a, 8080)),
      ),
    ]);
  const keys = (...addresses: string[]) => new Set(addresses.map((a) => `${a}:8080`));
  const gone: string[] = [];
  const waiter = (address: string, started = clock.now()) => {
    const t = {
      target: { stats: { key: `${address}:8080` }, address: { host: address, port: 8080 } } as Picked,
      started,
      gone: () => gone.push(address),
    };
    e.waiting(t);
    return t;
  };
  return { clock, e, config, keys, gone, waiter };
}

describe('endpoints: tries waiting on an endpoint that is gone', () => {
  it('an endpoint that leaves the config ends the tries waiting on it, and only those', () => {
    const { e, config, keys, gone, waiter } = setup();
    e.apply(config('10.0.0.1', '10.0.0.2'), keys('10.0.0.1', '10.0.0.2'));
    waiter('10.0.0.1');
    waiter('10.0.0.2');
    const answered = waiter('10.0.0.1');
    e.done(answered);
    e.apply(config('10.0.0.2'), keys('10.0.0.2'));
    assert.deepEqual(gone, ['10.0.0.1'], 'the try that had its answer is left alone');
    e.apply(config('10.0.0.2'), keys('10.0.0.2'));
    assert.deepEqual(gone, ['10.0.0.1'], 'once');
  });

  it("a try sent again after a config change picks among the new config's endpoints", () => {
    const { e, config, keys } = setup();
    const before = config('10.0.0.1');
    e.apply(before, keys('10.0.0.1'));
    const backend = { service: before.services[0]!, port: before.services[0]!.ports[0]!, weight: 1 };
    assert.deepEqual(
      e.entriesFor(backend).stats.map((st) => st.key),
      ['10.0.0.1:8080'],
    );
    // The pod replaced: the request that started under `before` still holds its backend.
    e.apply(config('10.0.0.2'), keys('10.0.0.2'));
    assert.deepEqual(
      e.entriesFor(backend).stats.map((st) => st.key),
      ['10.0.0.2:8080'],
    );
  });

  it('an endpoint found unreachable loses its pooled connections and its waiting tries', () => {
    const { e, config, keys, gone, waiter } = setup();
    const forgotten: string[] = [];
    e.onUnreachable = (k) => forgotten.push(k);
    e.apply(config('10.0.0.1', '10.0.0.2'), keys('10.0.0.1', '10.0.0.2'));
    waiter('10.0.0.1');
    waiter('10.0.0.2');
    e.unreachable('10.0.0.2:8080');
    assert.deepEqual(forgotten, ['10.0.0.2:8080']);
    assert.deepEqual(gone, ['10.0.0.2']);
  });

  it('an endpoint whose tries have waited is probed once a second at most; one that does not answer is gone', async () => {
    const { clock, e, config, keys, gone, waiter } = setup();
    const probed: string[] = [];
    e.probe = async (to: UpstreamAddress) => {
      probed.push(to.host);
      return to.host === '10.0.0.1' ? 'unreachable' : 'answered';
    };
    e.apply(config('10.0.0.1', '10.0.0.2', '10.0.0.3'), keys('10.0.0.1', '10.0.0.2', '10.0.0.3'));
    waiter('10.0.0.1', clock.now() - 1000);
    const slow = waiter('10.0.0.2', clock.now() - 1000);
    // Waiting for a moment only: not probed.
    const fresh = waiter('10.0.0.3');
    for (let i = 0; i < 50 && gone.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(gone, ['10.0.0.1']);
    // Several sweeps later, with the clock still: no second probe of the endpoint that answered.
    await new Promise((r) => setTimeout(r, 700));
    assert.deepEqual(probed.sort(), ['10.0.0.1', '10.0.0.2']);
    e.done(slow);
    e.done(fresh);
  });
});
