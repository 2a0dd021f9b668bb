// Route matches and filters against the Gateway API's own examples (HTTPRouteMatch,
// HTTPPathModifier's table, HTTPRequestRedirectFilter's port rules, HTTPHeaderFilter).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileRegex } from '../../api/regex.ts';
import {
  applyUrlFilters,
  compileFilters,
  compileHeaderModifier,
  editHeaders,
  type HeaderMap,
  modifyPath,
  type RedirectFilter,
  type RequestHead,
  redirectLocation,
  splitAuthority,
} from './filters.ts';
import { matches, queryParam, type RouteMatch, underPrefix } from './match.ts';

const req = (path: string, headers: Record<string, string> = {}, method = 'GET') => ({
  method,
  path,
  header: (n: string) => headers[n],
});

describe('route matches', () => {
  it('PathPrefix matches whole path elements; a trailing / of the prefix is ignored', () => {
    const table: Array<[string, string, boolean]> = [
      ['/abc', '/abc', true],
      ['/abc/', '/abc', true],
      ['/abc/def', '/abc', true],
      ['/abcd', '/abc', false],
      ['/abc', '/abc/', true],
      ['/abc/def', '/abc/', true],
      ['/abcd', '/abc/', false],
      ['/anything', '/', true],
      ['/', '/', true],
    ];
    for (const [path, prefix, want] of table)
      assert.equal(underPrefix(path, prefix), want, `${path} under ${prefix}`);
  });

  it('ANDs path, headers, query parameters and method; Exact path is exact', () => {
    const m: RouteMatch = {
      path: { type: 'Exact', value: '/v2/example' },
      headers: [{ name: 'Version', value: 'two' }],
      queryParams: [{ name: 'animal', value: 'whale' }],
      method: 'POST',
    };
    const hit = req('/v2/example?animal=whale', { version: 'two' }, 'POST');
    assert.ok(matches(m, hit, compileRegex));
    assert.ok(!matches(m, { ...hit, method: 'GET' }, compileRegex), 'method');
    assert.ok(
      !matches(m, req('/v2/example?animal=dolphin', { version: 'two' }, 'POST'), compileRegex),
      'query',
    );
    assert.ok(!matches(m, req('/v2/example?animal=whale', {}, 'POST'), compileRegex), 'header');
    assert.ok(
      !matches(m, req('/v2/example/?animal=whale', { version: 'two' }, 'POST'), compileRegex),
      'exact',
    );
  });

  it(
    'query parameters: first value, percent-decoded (' +
      ' kept), names case-sensitive; regular expressions (RE2, whole value)',
    () => {
      assert.equal(queryParam('/p?a=1&a=2', 'a'), '1');
      assert.equal(queryParam('/p?x=hello%20world&y=a+b', 'x'), 'hello world');
      assert.equal(queryParam('/p?x=hello%20world&y=a+b', 'y'), 'a+b');
      assert.equal(queryParam('/p?A=1', 'a'), undefined);
      assert.equal(queryParam('/p?flag', 'flag'), '');
      assert.equal(queryParam('/p', 'a'), undefined);
      const m: RouteMatch = { queryParams: [{ name: 'id', type: 'RegularExpression', value: '[0-9]+' }] };
      assert.ok(matches(m, req('/?id=42'), compileRegex));
      assert.ok(!matches(m, req('/?id=42x'), compileRegex));
    },
  );

  it('of entries naming one header or parameter only the first counts; regex paths match the whole path', () => {
    const m: RouteMatch = {
      headers: [
        { name: 'x-a', value: '1' },
        { name: 'X-A', value: '2' },
      ],
      queryParams: [
        { name: 'q', value: '1' },
        { name: 'q', value: '2' },
      ],
    };
    assert.ok(matches(m, req('/?q=1', { 'x-a': '1' }), compileRegex));
    const re: RouteMatch = { path: { type: 'RegularExpression', value: '/v[0-9]+/.*' } };
    assert.ok(matches(re, req('/v2/x?y=z'), compileRegex));
    assert.ok(!matches(re, req('/api/v2/x'), compileRegex));
  });
});

describe('path modifiers', () => {
  it('ReplacePrefixMatch: the Gateway API table, query kept', () => {
    const table: Array<[string, string, string, string]> = [
      ['/foo/bar', '/foo', '/xyz', '/xyz/bar'],
      ['/foo/bar', '/foo', '/xyz/', '/xyz/bar'],
      ['/foo/bar', '/foo/', '/xyz', '/xyz/bar'],
      ['/foo/bar', '/foo/', '/xyz/', '/xyz/bar'],
      ['/foo', '/foo', '/xyz', '/xyz'],
      ['/foo/', '/foo', '/xyz', '/xyz/'],
      ['/foo/bar', '/foo', '', '/bar'],
      ['/foo/', '/foo', '', '/'],
      ['/foo', '/foo', '', '/'],
      ['/foo/', '/foo', '/', '/'],
      ['/foo', '/foo', '/', '/'],
      // The conformance suite's cases.
      ['/prefix/one/two', '/prefix/one', '/one', '/one/two'],
      ['/strip-prefix/three', '/strip-prefix', '/', '/three'],
      ['/strip-prefix', '/strip-prefix', '/', '/'],
      ['/a/b?x=1', '/a', '/z', '/z/b?x=1'],
    ];
    for (const [path, prefix, replace, want] of table)
      assert.equal(
        modifyPath(path, { type: 'ReplacePrefixMatch', value: replace, prefix }),
        want,
        `${path} prefix ${prefix} → ${JSON.stringify(replace)}`,
      );
  });

  it('ReplaceFullPath replaces the path and keeps the query', () => {
    assert.equal(modifyPath('/full/one/two?a=b', { type: 'ReplaceFullPath', value: '/one' }), '/one?a=b');
  });
});

describe('RequestRedirect', () => {
  const head: RequestHead = { scheme: 'http', authority: 'echo', path: '/x?y=1', port: 80 };
  it('builds Location from the filter, else the request; the port rules of the spec', () => {
    const table: Array<[Omit<RedirectFilter, 'type' | 'statusCode'>, Partial<RequestHead>, string]> = [
      [{ hostname: 'example.org' }, {}, 'http://example.org/x?y=1'],
      [{ scheme: 'https' }, {}, 'https://echo/x?y=1'],
      // A scheme without a port: that scheme's well-known port (left out).
      [{ scheme: 'https' }, { authority: 'echo:8080', port: 8080 }, 'https://echo/x?y=1'],
      [{ scheme: 'http' }, { authority: 'echo:8080', port: 8080 }, 'http://echo/x?y=1'],
      // No scheme, no port: the port called (the Service port), shown unless 80 for http.
      [{ hostname: 'example.org' }, { authority: 'echo:8080', port: 8080 }, 'http://example.org:8080/x?y=1'],
      [{ port: 8083 }, {}, 'http://echo:8083/x?y=1'],
      [{ port: 8083, hostname: 'example.org' }, {}, 'http://example.org:8083/x?y=1'],
      [{ scheme: 'https', port: 443 }, {}, 'https://echo/x?y=1'],
      [{ scheme: 'https', port: 8443 }, {}, 'https://echo:8443/x?y=1'],
      [{ scheme: 'http', port: 443 }, {}, 'http://echo:443/x?y=1'],
      [{ path: { type: 'ReplaceFullPath', value: '/paprika' } }, {}, 'http://echo/paprika?y=1'],
      [{}, { authority: '[fd00::1]:80' }, 'http://[fd00::1]/x?y=1'],
    ];
    for (const [r, over, want] of table)
      assert.equal(
        redirectLocation({ type: 'RequestRedirect', statusCode: 302, ...r }, { ...head, ...over }),
        want,
      );
  });

  it('ends the request with its status, before any rewrite; the compiled filters keep the first of each', () => {
    const f = compileFilters([
      {
        type: 'RequestRedirect',
        statusCode: 302,
        path: { type: 'ReplacePrefixMatch', value: '/replacement-prefix', prefix: '/original-prefix' },
      },
      { type: 'RequestRedirect', statusCode: 301 },
    ])!;
    assert.deepEqual(applyUrlFilters({ ...head, path: '/original-prefix/lemon' }, f.redirect, f.rewrite), {
      kind: 'redirect',
      status: 302,
      location: 'http://echo/replacement-prefix/lemon',
    });
    for (const statusCode of [301, 303, 307, 308] as const) {
      const r = applyUrlFilters(head, { type: 'RequestRedirect', statusCode }, undefined);
      assert.ok(r.kind === 'redirect' && r.status === statusCode);
    }
  });

  it('splits an authority into host and port', () => {
    assert.deepEqual(splitAuthority('web:8080'), { host: 'web', port: 8080 });
    assert.deepEqual(splitAuthority('web'), { host: 'web', port: undefined });
    assert.deepEqual(splitAuthority('[::1]:80'), { host: '[::1]', port: 80 });
  });
});

describe('URLRewrite', () => {
  const head: RequestHead = { scheme: 'http', authority: 'echo', path: '/prefix/one/two', port: 80 };
  it('rewrites the Host and the path; without a rewrite the head is as received', () => {
    const f = compileFilters([
      {
        type: 'URLRewrite',
        hostname: 'one.example.org',
        path: { type: 'ReplacePrefixMatch', value: '/', prefix: '/prefix' },
      },
    ])!;
    assert.deepEqual(applyUrlFilters(head, f.redirect, f.rewrite), {
      kind: 'forward',
      authority: 'one.example.org',
      path: '/one/two',
      rewritten: true,
    });
    assert.deepEqual(applyUrlFilters(head, undefined, undefined), {
      kind: 'forward',
      authority: 'echo',
      path: '/prefix/one/two',
      rewritten: false,
    });
  });

  it('compiles filters in order: header modifiers, mirrors; none compiles to undefined', () => {
    const f = compileFilters([
      { type: 'RequestHeaderModifier', set: [{ name: 'A', value: '1' }] },
      { type: 'RequestMirror', service: 'shop/shadow', percentage: 50 },
      { type: 'ResponseHeaderModifier', remove: ['Server'] },
      { type: 'RequestHeaderModifier', add: [{ name: 'b', value: '2' }] },
    ])!;
    assert.deepEqual(f.request, [
      { set: [['a', '1']], add: [], remove: [] },
      { set: [], add: [['b', '2']], remove: [] },
    ]);
    assert.deepEqual(f.response, [{ set: [], add: [], remove: ['server'] }]);
    assert.deepEqual(f.mirrors, [{ type: 'RequestMirror', service: 'shop/shadow', percentage: 50 }]);
    assert.equal(compileFilters([]), undefined);
  });
});

describe('header modifiers', () => {
  it('set overwrites, add appends with a comma, remove deletes; names case-insensitive', () => {
    const edits = compileHeaderModifier({
      set: [{ name: 'X-Header-Set', value: 'set-overwrites-values' }],
      add: [
        { name: 'X-Header-Add', value: 'header-val-1' },
        { name: 'X-Header-Add-Append', value: 'header-val-2' },
      ],
      remove: ['X-Header-Remove'],
    })!;
    const h: HeaderMap = {
      'x-header-remove': 'remove-val',
      'x-header-add-append': 'append-val-1',
      'x-header-set': 'set-val',
    };
    editHeaders(h, [edits]);
    assert.deepEqual(h, {
      'x-header-add': 'header-val-1',
      'x-header-add-append': 'append-val-1,header-val-2',
      'x-header-set': 'set-overwrites-values',
    });
  });

  it('the first entry for a name wins; set-cookie is added as its own line; nothing to do compiles to undefined', () => {
    const e = compileHeaderModifier({
      set: [
        { name: 'A', value: '1' },
        { name: 'a', value: '2' },
      ],
      add: [{ name: 'set-cookie', value: 'x=1' }],
      remove: ['a'],
    })!;
    assert.deepEqual(e.set, [['a', '1']]);
    assert.deepEqual(e.remove, [], 'a name already set is not also removed');
    const h: HeaderMap = { 'set-cookie': ['s=0'] };
    editHeaders(h, [e]);
    assert.deepEqual(h, { a: '1', 'set-cookie': ['s=0', 'x=1'] });
    assert.equal(compileHeaderModifier({}), undefined);
  });

  it('never edits the framing, hop-by-hop, Host or the sidecar headers', () => {
    const e = compileHeaderModifier({
      set: [
        { name: 'Content-Length', value: '0' },
        { name: 'Host', value: 'x' },
        { name: 'weft-src-workload', value: 'forged' },
        { name: 'x-ok', value: '1' },
      ],
      add: [
        { name: 'Transfer-Encoding', value: 'chunked' },
        { name: 'connection', value: 'close' },
      ],
      remove: ['weft-src-namespace', 'TE', 'x-gone'],
    })!;
    assert.deepEqual(e, { set: [['x-ok', '1']], add: [], remove: ['x-gone'] });
    assert.equal(compileHeaderModifier(undefined), undefined);
  });
});
