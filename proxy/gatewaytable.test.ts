// GatewayTable (gateway mode's routing table from the volume and the apiserver watch): the
// volume is read at start; a candidate applies only with a higher generation than the applied
// one, from either source; one that is not JSON or not a valid GatewayConfig is refused, counted,
// and the last good table stays.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import type { GatewayConfig } from '../api/proxyconfig.ts';
import { GatewayTable } from './gatewaytable.ts';

const dir = mkdtempSync(join(tmpdir(), 'weft-gatewaytable-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const table = (generation: number | undefined, port = 8080): GatewayConfig => ({
  gateway: 'edge/public',
  ...(generation === undefined ? {} : { generation }),
  ports: [{ port, bind: port, hosts: [] }],
});

function setup(volume: GatewayConfig | string) {
  const file = join(dir, `gateway-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, typeof volume === 'string' ? volume : JSON.stringify(volume));
  const applied: GatewayConfig[] = [];
  const t = new GatewayTable({
    file,
    proxy: { setGateway: async (gw) => void applied.push(gw) },
    log: pino({ level: 'silent' }),
    pollMs: 3_600_000,
  });
  return { t, applied, file };
}

describe('GatewayTable', () => {
  test('the volume at start; the watch moves it forward, never back; the same generation is not applied twice', async () => {
    const { t, applied } = setup(table(3));
    await t.start();
    t.stop();
    assert.deepEqual(
      applied.map((g) => g.generation),
      [3],
    );
    assert.equal(t.status.source, 'volume');
    await t.offer(JSON.stringify(table(3, 9090)), 'apiserver');
    await t.offer(JSON.stringify(table(2, 9090)), 'apiserver');
    await t.offer(JSON.stringify(table(undefined, 9090)), 'volume');
    assert.equal(applied.length, 1, 'an equal, a lower and no generation are not applied');
    assert.equal(t.status.stale, 3);
    await t.offer(JSON.stringify(table(4, 9090)), 'apiserver');
    assert.deepEqual(applied.at(-1)?.ports[0]?.port, 9090);
    assert.equal(t.status.generation, 4);
    assert.equal(t.status.source, 'apiserver');
  });

  test('not JSON, or not a valid GatewayConfig: refused naming the field, counted, the last good kept', async () => {
    const { t, applied } = setup(table(1));
    await t.start();
    t.stop();
    await t.offer('{"gateway":', 'apiserver');
    assert.equal(t.status.failures, 1);
    assert.match(t.status.lastError?.message ?? '', /JSON/);
    await t.offer(JSON.stringify({ ...table(2), ports: [{ port: 0, bind: 80, hosts: [] }] }), 'apiserver');
    assert.equal(t.status.failures, 2);
    assert.match(t.status.lastError?.message ?? '', /gateway\.ports\[0\]\.port: must be >= 1/);
    assert.equal(applied.length, 1);
    assert.equal(t.status.generation, 1, 'the last good table is in force');
    await t.offer(JSON.stringify(table(2)), 'apiserver');
    assert.equal(t.status.generation, 2);
    assert.equal(t.status.lastError, undefined);
  });

  test('a volume that is not a table yet: nothing applied, the watch can still bring one', async () => {
    const { t, applied } = setup('not json');
    await t.start();
    t.stop();
    assert.equal(applied.length, 0);
    assert.equal(t.status.failures, 1);
    await t.offer(JSON.stringify(table(1)), 'apiserver');
    assert.equal(applied.length, 1);
  });
});
