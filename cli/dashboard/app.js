// The Weft dashboard page: reads /api/dashboard (JSON lines: progress, then the data) and draws
// it, again and again. Plain browser JavaScript, no build step; every value is written as text.
'use strict';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const pct = (v) => (v === undefined || v === null ? '-' : `${(v * 100).toFixed(1)}%`);
const ms = (v) => (v === undefined || v === null ? '-' : `${v}ms`);

function el(tag, attrs, ...children) {
  const e = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) e.setAttribute(k, String(v));
  for (const c of children) e.append(c);
  return e;
}

function row(tbody, cells, attrs) {
  const tr = el('tr', attrs);
  for (const c of cells) tr.append(c instanceof Node ? el('td', {}, c) : el('td', {}, String(c)));
  tbody.append(tr);
}

function showProgress(p) {
  $('progress').hidden = false;
  const percent = Math.round((p.done / p.total) * 100);
  $('progress').setAttribute('aria-valuenow', String(percent));
  $('progress-bar').style.width = `${percent}%`;
  $('progress-text').textContent = `${p.message}…`;
}

function drawGraph(data) {
  const svg = $('graph');
  svg.replaceChildren();
  const ids = new Set(data.workloads.map((w) => w.name));
  const edges = data.edges.map((e) => {
    const [from, to] = e.name.split(' -> ');
    ids.add(from);
    ids.add(to);
    return { ...e, from, to };
  });
  if (ids.size === 0) {
    svg.append(el('svg:text', { x: 10, y: 30, class: 'empty' }, 'no meshed workloads'));
    return;
  }
  // Columns by the longest path from a caller (cycles stop after as many rounds as nodes).
  const col = new Map([...ids].map((id) => [id, 0]));
  for (let i = 0; i < ids.size; i++)
    for (const e of edges) if (e.from !== e.to) col.set(e.to, Math.max(col.get(e.to), Math.min(col.get(e.from) + 1, ids.size)));
  const rows = new Map();
  const pos = new Map();
  for (const id of [...ids].sort()) {
    const c = col.get(id);
    const r = rows.get(c) ?? 0;
    rows.set(c, r + 1);
    pos.set(id, { x: 20 + c * 470, y: 30 + r * 90 });
  }
  const W = 215;
  const H = 40;
  const stat = new Map(data.workloads.map((w) => [w.name, w]));
  for (const e of edges) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    const x1 = a.x + W;
    const y1 = a.y + H / 2;
    const x2 = b.x;
    const y2 = b.y + H / 2;
    const d = e.from === e.to ? `M${x1},${y1} C${x1 + 60},${y1 - 60} ${x1 - 60},${y1 - 60} ${x1 - 20},${a.y}` : `M${x1},${y1} C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2},${y2}`;
    const bad = e.successRate !== undefined && e.successRate < 0.95;
    const g = el('svg:g', { class: `edge${bad ? ' bad' : ''}`, 'data-edge': e.name }, el('svg:path', { d, 'marker-end': 'url(#arrow)' }));
    const lines = [`${pct(e.successRate)} · ${e.rps} rps · p50 ${ms(e.latencyMs.p50)}`, `p95 ${ms(e.latencyMs.p95)} · p99 ${ms(e.latencyMs.p99)}`, e.destination?.service ?? ''];
    lines.forEach((text, k) => {
      if (text) g.append(el('svg:text', { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 20 + k * 14 + (k === 2 ? 14 : 0), 'text-anchor': 'middle' }, text));
    });
    g.append(el('svg:title', {}, `${e.name}\n${e.source?.identity ?? '-'} -> ${e.destination?.identity ?? '-'}`));
    svg.append(g);
  }
  for (const id of ids) {
    const p = pos.get(id);
    const s = stat.get(id);
    const g = el('svg:g', { class: 'node', 'data-node': id, transform: `translate(${p.x},${p.y})` });
    g.append(el('svg:rect', { width: W, height: H }));
    g.append(el('svg:text', { x: 8, y: 16 }, id));
    g.append(el('svg:text', { x: 8, y: 32 }, s ? `${s.pods ?? 0} pod(s) · in: ${pct(s.successRate)} · ${s.rps} rps` : 'not meshed'));
    svg.append(g);
  }
  const defs = el('svg:defs', {});
  defs.append(el('svg:marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto' }, el('svg:path', { d: 'M0,0 L10,5 L0,10 z', fill: '#7d8ba3' })));
  svg.prepend(defs);
  const width = Math.max(...[...pos.values()].map((p) => p.x)) + W + 20;
  const height = Math.max(...[...pos.values()].map((p) => p.y)) + H + 30;
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.style.height = `${height}px`;
  svg.style.maxWidth = `${width}px`;
}

function drawSplits(data) {
  const box = $('splits');
  box.replaceChildren();
  if (data.trafficSplits.length === 0) box.append(el('p', { class: 'empty' }, 'no TrafficSplits'));
  for (const t of data.trafficSplits) {
    const d = el('div', { class: 'split', 'data-split': `${t.namespace}/${t.name}` });
    const ready = t.status ? ` · Ready ${t.status.ready} (${t.status.reason})` : '';
    d.append(el('h3', {}, `${t.namespace}/${t.name} → Service ${t.service}${ready}`));
    const bars = el('div', { class: 'bars' });
    for (const b of t.backends) {
      const observed = b.observed === undefined ? 'no traffic' : `${pct(b.observed)} (${b.requests} req)`;
      bars.append(el('span', {}, `${b.service} configured`), el('div', { class: 'bar', style: `width:${b.configured * 100}%` }), el('span', { 'data-backend': b.service, 'data-kind': 'configured' }, `${pct(b.configured)} (w ${b.weight})`));
      bars.append(el('span', {}, `${b.service} observed`), el('div', { class: 'bar observed', style: `width:${(b.observed ?? 0) * 100}%` }), el('span', { 'data-backend': b.service, 'data-kind': 'observed' }, observed));
    }
    d.append(bars);
    box.append(d);
  }
}

function drawAuthz(data) {
  const tbody = $('authz').tBodies[0];
  tbody.replaceChildren();
  if (data.authz.length === 0) row(tbody, ['no decisions yet', '', '', '', '', '']);
  for (const a of data.authz) {
    const policy = a.policy || (a.allowPolicies?.length ? `no rule of ALLOW ${a.allowPolicies.join(', ')} matched` : '(Mesh default)');
    row(tbody, [a.workload, el('span', { class: a.decision }, a.decision.toUpperCase()), policy, a.rule === '' ? '-' : a.rule, a.reason, a.count], { 'data-decision': a.decision });
  }
}

function drawStatus(data) {
  const tbody = $('status').tBodies[0];
  tbody.replaceChildren();
  for (const r of data.status) {
    const ready = `${r.ready}${r.upToDate ? '' : ' (not reconciled yet)'}`;
    const message = [r.message, r.programmed, r.proxies ? `${r.proxies.inSync} proxies in sync, ${r.proxies.outOfSync} out of sync` : ''].filter(Boolean).join(' · ');
    row(tbody, [r.kind, r.namespace || '-', r.name, el('span', { class: `ready-${r.ready}` }, ready), r.reason, message], { 'data-resource': `${r.kind}/${r.namespace}/${r.name}` });
  }
}

async function load() {
  const res = await fetch('/api/dashboard');
  if (!res.ok || !res.body) throw new Error(`/api/dashboard: ${res.status} ${await res.text()}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const msg = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      if (msg.progress) showProgress(msg.progress);
      if (msg.error) throw new Error(msg.error);
      if (msg.data) return msg.data;
    }
  }
  throw new Error('the dashboard server ended the answer without data');
}

async function loop() {
  for (;;) {
    try {
      const data = await load();
      drawGraph(data);
      drawSplits(data);
      drawAuthz(data);
      drawStatus(data);
      $('error').hidden = !data.errors.length;
      $('error').textContent = data.errors.join('\n');
      $('updated').textContent = `updated ${new Date().toLocaleTimeString()} · window ${data.windowSec.toFixed(1)}s`;
      $('progress').hidden = true;
      document.body.dataset.loaded = 'true';
    } catch (e) {
      $('error').hidden = false;
      $('error').textContent = `${e.message} (retrying)`;
      await new Promise((r) => setTimeout(r, 2000));
    }
    $('progress').hidden = true;
  }
}

loop();
