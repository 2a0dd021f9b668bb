// Issue 15's targets: every field the issue names is in the committed benchmark results
// (bench/results/proxy.json from `npm run bench:proxy`, density.json from `npm run
// bench:density`), and docs/proxy.md's table of targets shows the same values and says met or
// missed as the values do, so the doc cannot drift from the JSON.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const root = join(import.meta.dirname, '..');
const results = (file: string) =>
  JSON.parse(readFileSync(join(root, 'bench', 'results', file), 'utf8')) as Record<string, unknown>;

/** The targets, as it writes them: the field, its file, the bound. */
const TARGETS = [
  { file: 'proxy.json', field: 'ratios.addedP99VsNodePipe', bound: '≤ 1.5' },
  { file: 'proxy.json', field: 'ratios.addedP99MtlsVsNodePipe', bound: '≤ 2.0' },
  { file: 'proxy.json', field: 'ratios.cpuAt1kVsNodePipe', bound: '≤ 1.5' },
  { file: 'proxy.json', field: 'ratios.maxQpsVsNginx', bound: '≥ 0.70' },
  { file: 'proxy.json', field: 'ratios.addedP99VsNginx', bound: '≤ 1.5' },
  { file: 'proxy.json', field: 'memory.weftClient.rssAnonMB', bound: '≤ 26' },
  { file: 'proxy.json', field: 'memory.weftServer.rssAnonMB', bound: '≤ 26' },
  { file: 'density.json', field: 'nodeMemoryPerSidecarMB', bound: '≤ 30' },
] as const;

/** Whether `v` meets `bound` (≤ x or ≥ x). */
const meets = (v: number, bound: string) =>
  bound.startsWith('≤') ? v <= Number(bound.slice(1)) : v >= Number(bound.slice(1));

/** Fields the issue asks for beside the targets. */
const ALSO = [
  { file: 'density.json', field: 'sidecars.workingSetMB.p50' },
  { file: 'density.json', field: 'sidecars.workingSetMB.max' },
  { file: 'density.json', field: 'sidecars.privateMB.p50' },
  { file: 'density.json', field: 'sidecars.privateMB.max' },
  { file: 'density.json', field: 'conditions.pods.meshed' },
  { file: 'density.json', field: 'conditions.pods.unmeshed' },
] as const;

const at = (o: unknown, path: string): unknown =>
  path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], o);

/** The rows of the table that follows `**Issue 15's targets**` in docs/proxy.md: cells by row. */
export function targetTable(markdown: string): string[][] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => l.startsWith("**Issue 15's targets**"));
  if (start < 0) throw new Error("docs/proxy.md: no paragraph starting **Issue 15's targets**");
  const first = lines.findIndex((l, i) => i > start && l.startsWith('|'));
  const rows: string[][] = [];
  for (let i = first; i >= 0 && i < lines.length && lines[i]!.startsWith('|'); i++)
    rows.push(
      lines[i]!.slice(1, -1)
        .split('|')
        .map((c) => c.trim()),
    );
  return rows.slice(2);
}

describe("issue 15's targets", () => {
  for (const t of [...TARGETS, ...ALSO])
    it(`${t.file} has ${t.field}, a number`, () => {
      const v = at(results(t.file), t.field);
      assert.equal(typeof v, 'number', `${t.field} in bench/results/${t.file} is ${JSON.stringify(v)}`);
      assert.ok(Number.isFinite(v), `${t.field} is ${v}`);
    });

  it('docs/proxy.md shows each measured value and met/missed as the JSON says', () => {
    const rows = targetTable(readFileSync(join(root, 'docs', 'proxy.md'), 'utf8'));
    for (const t of TARGETS) {
      const row = rows.find((r) => r[0]!.includes(`\`${t.field}\``));
      assert.ok(row, `docs/proxy.md's table of issue 15's targets has no row for \`${t.field}\``);
      const v = at(results(t.file), t.field) as number;
      const shown = Number(/^-?\d+(\.\d+)?/.exec(row[1]!.replaceAll(',', ''))?.[0]);
      assert.equal(shown, v, `${t.field}: the doc shows ${row[1]}, bench/results/${t.file} has ${v}`);
      assert.ok(
        row[0]!.includes(t.bound),
        `${t.field}: the doc's target "${row[0]}" does not say ${t.bound}`,
      );
      assert.equal(
        row[2],
        meets(v, t.bound) ? '**met**' : '**missed**',
        `${t.field} = ${v}: the doc says ${row[2]}`,
      );
    }
  });

  it('reads the table that follows the heading, and only it', () => {
    const md = [
      'text',
      "**Issue 15's targets** (same run):",
      '',
      '| target | measured | | why |',
      '|---|---|---|---|',
      '| `a` ≤ 1 | 3.25 (x) | **missed** | y |',
      '| `b` ≥ 0.7 | 1,234 | **met** | |',
      '',
      '| other | table |',
    ].join('\n');
    assert.deepEqual(targetTable(md), [
      ['`a` ≤ 1', '3.25 (x)', '**missed**', 'y'],
      ['`b` ≥ 0.7', '1,234', '**met**', ''],
    ]);
    assert.throws(() => targetTable('no table'), /no paragraph/);
  });
});
