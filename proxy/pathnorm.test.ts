import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { PATH_NORMALIZATIONS } from '../api/index.ts';
import { normalizeTarget, type PathNormalization } from './pathnorm.ts';

type Row = [input: string, none: string, base: string, merge: string, decode: string];
const BAD = '400';

// input → NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES ('400': refused). The rows from
// "/" to "/app//../../admin" are the cases Istio's own path normalization tests use.
const TABLE: Row[] = [
  ['/', '/', '/', '/', '/'],
  ['/app/', '/app/', '/app/', '/app/', '/app/'],
  ['/app/../admin', '/app/../admin', '/admin', '/admin', '/admin'],
  ['/app//', '/app//', '/app//', '/app/', '/app/'],
  ['/app/%2f', '/app/%2f', '/app/%2F', '/app/%2F', '/app/'],
  ['/app%2f/', '/app%2f/', '/app%2F/', '/app%2F/', '/app/'],
  ['/xyz%30..//abc', '/xyz%30..//abc', '/xyz0..//abc', '/xyz0../abc', '/xyz0../abc'],
  ['/app/%2E./admin', '/app/%2E./admin', '/admin', '/admin', '/admin'],
  ['/app\\admin', '/app\\admin', '/app/admin', '/app/admin', '/app/admin'],
  ['/app/\\/\\/\\admin', '/app/\\/\\/\\admin', '/app//////admin', '/app/admin', '/app/admin'],
  [
    '/%2Fapp%5cadmin%5Cabc',
    '/%2Fapp%5cadmin%5Cabc',
    '/%2Fapp%5Cadmin%5Cabc',
    '/%2Fapp%5Cadmin%5Cabc',
    '/app/admin/abc',
  ],
  ['/app//../admin', '/app//../admin', '/app/admin', '/app/admin', '/app/admin'],
  ['/app//../../admin', '/app//../../admin', '/admin', '/admin', '/admin'],
  ['/app#foo', '/app#foo', '/app', '/app', '/app'],
  // The attack's spellings of /admin.
  ['/./admin', '/./admin', '/admin', '/admin', '/admin'],
  ['//admin', '//admin', '//admin', '/admin', '/admin'],
  ['/%61dmin', '/%61dmin', '/admin', '/admin', '/admin'],
  ['/%2e%2e/admin', '/%2e%2e/admin', '/admin', '/admin', '/admin'],
  ['/.%2e/admin', '/.%2e/admin', '/admin', '/admin', '/admin'],
  ['\\admin', '\\admin', '/admin', '/admin', '/admin'],
  ['/x/..%2fadmin', '/x/..%2fadmin', '/x/..%2Fadmin', '/x/..%2Fadmin', '/admin'],
  ['/x/%2e%2e%5cadmin', '/x/%2e%2e%5cadmin', '/x/..%5Cadmin', '/x/..%5Cadmin', '/admin'],
  ['/;x/admin', '/;x/admin', BAD, BAD, BAD],
  ['/..;/admin', '/..;/admin', BAD, BAD, BAD],
  ['/admin;jsessionid=1', '/admin;jsessionid=1', BAD, BAD, BAD],
  ['/a%3Bb', '/a%3Bb', '/a%3Bb', '/a%3Bb', '/a%3Bb'],
  // Absolute-form: origin-form in every mode (Host is "x" in these rows).
  ['http://x/admin', '/admin', '/admin', '/admin', '/admin'],
  ['http://X/api/../admin?q', '/api/../admin?q', '/admin?q', '/admin?q', '/admin?q'],
  ['http://x', '/', '/', '/', '/'],
  ['http://x?a=1', '/?a=1', '/?a=1', '/?a=1', '/?a=1'],
  ['http://other/admin', BAD, BAD, BAD, BAD],
  // Queries are never touched; fragments go.
  [
    '/a/./b?x=/../%2e&y=%2f',
    '/a/./b?x=/../%2e&y=%2f',
    '/a/b?x=/../%2e&y=%2f',
    '/a/b?x=/../%2e&y=%2f',
    '/a/b?x=/../%2e&y=%2f',
  ],
  ['/a?b#c', '/a?b#c', '/a?b', '/a?b', '/a?b'],
  // Characters a path may not hold are escaped; escapes are upper-cased; unreserved decoded.
  ['/a|b{c}"d', '/a|b{c}"d', '/a%7Cb%7Bc%7D%22d', '/a%7Cb%7Bc%7D%22d', '/a%7Cb%7Bc%7D%22d'],
  ['/%7euser/%c0%ae', '/%7euser/%c0%ae', '/~user/%C0%AE', '/~user/%C0%AE', '/~user/%C0%AE'],
  ['/a%zzb', '/a%zzb', BAD, BAD, BAD],
  ['/a%2', '/a%2', BAD, BAD, BAD],
  ['/a\u0001b', '/a\u0001b', BAD, BAD, BAD],
  ['/caf\u00e9', '/caf\u00e9', BAD, BAD, BAD],
  ['admin', 'admin', BAD, BAD, BAD],
  // Dot segments at the ends.
  ['/a/b/..', '/a/b/..', '/a/', '/a/', '/a/'],
  ['/a/.', '/a/.', '/a/', '/a/', '/a/'],
  ['/..', '/..', '/', '/', '/'],
  ['/../../a', '/../../a', '/a', '/a', '/a'],
  ['*', '*', '*', '*', '*'],
];

const MODES: PathNormalization[] = ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'];

describe(`path normalization: ${TABLE.length} targets × ${MODES.length} modes`, () => {
  for (const [input, ...want] of TABLE) {
    test(JSON.stringify(input), () => {
      MODES.forEach((mode, i) => {
        const r = normalizeTarget(input, mode, 'x');
        const got = r.ok ? r.target : BAD;
        assert.equal(got, want[i], `${mode}: ${JSON.stringify(input)}${r.ok ? '' : ` (${r.reason})`}`);
      });
    });
  }

  test('every refusal says what is wrong and what to send instead', () => {
    for (const t of ['/;x/admin', '/a%zz', '/a\u0001', 'admin']) {
      const r = normalizeTarget(t, 'BASE', 'x');
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.reason, /(send|use|percent-encode|must)/);
    }
    const r = normalizeTarget('http://a/x', 'NONE', 'b');
    assert.ok(!r.ok && r.reason.includes('"a"') && r.reason.includes('"b"'));
  });

  test('the modes listed are the ones the table covers', () => {
    assert.deepEqual([...PATH_NORMALIZATIONS], MODES);
  });
});

// Properties over paths built from the pieces attacks are made of.
const piece = fc.constantFrom(
  '/',
  '//',
  '\\',
  '.',
  '..',
  '%2e',
  '%2E',
  '%2f',
  '%5C',
  '%61',
  '%7e',
  '%25',
  'a',
  'admin',
  '~',
  '|',
  '?',
  '#',
  '&',
  '=',
  ':',
  '@',
);
const target = fc.array(piece, { maxLength: 12 }).map((p) => `/${p.join('')}`);
const normalizing = fc.constantFrom<PathNormalization>('BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES');

describe('path normalization properties', () => {
  test('idempotent: a normalized target normalizes to itself', () => {
    fc.assert(
      fc.property(target, normalizing, (t, mode) => {
        const once = normalizeTarget(t, mode, 'x');
        if (!once.ok) return true;
        const twice = normalizeTarget(once.target, mode, 'x');
        assert.ok(twice.ok, `${t} → ${once.target} is refused the second time`);
        assert.equal(twice.target, once.target, `${t}`);
        return true;
      }),
      { numRuns: 2000 },
    );
  });

  test('the path starts with "/" and holds no "." or ".." segment, encoded or not', () => {
    fc.assert(
      fc.property(target, normalizing, (t, mode) => {
        const r = normalizeTarget(t, mode, 'x');
        if (!r.ok) return true;
        const path = r.target.split('?')[0]!;
        assert.ok(path.startsWith('/'), `${t} → ${r.target}`);
        for (const seg of path.split('/')) {
          const decoded = seg.replace(/%2e/gi, '.');
          assert.ok(decoded !== '.' && decoded !== '..', `${t} → ${r.target} keeps a dot segment`);
        }
        assert.ok(!path.includes('\\'), `${t} → ${r.target} keeps a backslash`);
        if (mode !== 'BASE') assert.ok(!path.includes('//'), `${t} → ${r.target} keeps //`);
        if (mode === 'DECODE_AND_MERGE_SLASHES') assert.ok(!/%2f|%5c/i.test(path), `${t} → ${r.target}`);
        return true;
      }),
      { numRuns: 2000 },
    );
  });

  test('the query is passed on as received', () => {
    fc.assert(
      fc.property(target, fc.constantFrom('?a=/../b', '?x=%2e%2E&y=\\', '?'), normalizing, (t, q, mode) => {
        const base = t.split('#')[0]!.split('?')[0]!;
        const r = normalizeTarget(`${base}${q}`, mode, 'x');
        if (r.ok) assert.ok(r.target.endsWith(q), `${base}${q} → ${r.target}`);
        return true;
      }),
    );
  });
});
