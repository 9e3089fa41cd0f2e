/*
 * aiecs-tracing trace viewer.
 *
 * A dependency-free single-page UI over the collector's Jaeger-compatible
 * query API (/api/services, /api/traces, /api/dependencies, ...).
 *
 * Security rule for this file: span data (names, tags, logs, process tags)
 * is untrusted. It only ever reaches the DOM through textContent / text
 * nodes / setAttribute on inert attributes, never through innerHTML.
 */
'use strict';

(() => {
  // ------------------------------------------------------------------ DOM helpers

  const SVG_NS = 'http://www.w3.org/2000/svg';

  function setAttrs(el, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === 'class') el.setAttribute('class', v);
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function appendAll(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c == null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  /** Create an HTML element; string children become text nodes (escaped). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    return appendAll(el, children);
  }

  /** Create an SVG element. */
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    return appendAll(el, children);
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  // ------------------------------------------------------------------ formatting

  function trimNum(n) {
    const digits = n >= 100 ? 0 : n >= 10 ? 1 : 2;
    return String(parseFloat(n.toFixed(digits)));
  }

  /** Format a duration given in microseconds. */
  function fmtDuration(us) {
    if (us == null || !Number.isFinite(us)) return '–';
    if (us === 0) return '0ms';
    if (us < 1000) return `${Math.round(us)}µs`;
    const ms = us / 1000;
    if (ms < 1000) return `${trimNum(ms)}ms`;
    const sec = ms / 1000;
    if (sec < 60) return `${trimNum(sec)}s`;
    const m = Math.floor(sec / 60);
    if (m < 60) return `${m}m ${Math.round(sec - m * 60)}s`;
    const hr = Math.floor(m / 60);
    return `${hr}h ${m - hr * 60}m`;
  }

  const pad = (n, w = 2) => String(n).padStart(w, '0');

  /** Format an epoch-microseconds timestamp as local date and time. */
  function fmtTimestamp(us) {
    if (!Number.isFinite(us)) return '–';
    const d = new Date(us / 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function fmtClock(us) {
    const d = new Date(us / 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtAgo(us) {
    const sec = (Date.now() - us / 1000) / 1000;
    if (!Number.isFinite(sec)) return '';
    if (sec < 0) return 'in the future';
    if (sec < 45) return 'a few seconds ago';
    if (sec < 90) return 'a minute ago';
    const min = Math.round(sec / 60);
    if (min < 60) return `${min} minutes ago`;
    const hr = Math.round(min / 60);
    if (hr < 24) return hr === 1 ? 'an hour ago' : `${hr} hours ago`;
    const days = Math.round(hr / 24);
    return days === 1 ? 'a day ago' : `${days} days ago`;
  }

  function plural(n, word, many) {
    return `${n} ${n === 1 ? word : (many || `${word}s`)}`;
  }

  function fmtValue(v) {
    if (v === null || v === undefined) return '';
    if (typeof v === 'object') {
      try { return JSON.stringify(v); } catch (_e) { return String(v); }
    }
    return String(v);
  }

  const shortId = (id) => String(id || '').slice(0, 7);

  // ------------------------------------------------------------------ service colours

  const PALETTE = [
    '#3b7dd8', '#e08a1e', '#2e9e6a', '#8e5cc9', '#17a2b8', '#c2477f',
    '#7a8c2a', '#5b6bd6', '#b5651d', '#2b8a8a', '#a04ac0', '#6b7f99',
  ];
  const serviceColours = new Map();

  function colourFor(service) {
    if (!serviceColours.has(service)) {
      serviceColours.set(service, PALETTE[serviceColours.size % PALETTE.length]);
    }
    return serviceColours.get(service);
  }

  function serviceChip(name, extra) {
    return h('span', { class: 'svc-chip', title: name },
      h('span', { class: 'svc-dot', style: { background: colourFor(name) } }),
      h('span', { class: 'svc-chip-name' }, name),
      extra != null ? h('span', { class: 'svc-chip-count' }, extra) : null);
  }

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status || 0;
    }
  }

  async function api(path, params) {
    const url = new URL(path, location.origin);
    if (params) {
      for (const [k, v] of Object.entries(params)) {
        if (v !== '' && v != null) url.searchParams.set(k, String(v));
      }
    }
    let res;
    try {
      res = await fetch(url, { headers: { Accept: 'application/json' } });
    } catch (e) {
      throw new ApiError(`Cannot reach the collector (${url.pathname}): ${e.message}`);
    }
    const text = await res.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_e) { body = null; }
    const errs = body && Array.isArray(body.errors) ? body.errors : [];
    if (!res.ok) {
      const msg = errs.map((e) => e.msg || e.message || JSON.stringify(e)).join('; ') ||
        text.slice(0, 200) || res.statusText;
      throw new ApiError(`${url.pathname} failed: HTTP ${res.status} ${msg}`, res.status);
    }
    if (body == null || typeof body !== 'object') {
      throw new ApiError(`${url.pathname} returned an invalid (non-JSON) response`);
    }
    if (errs.length && body.data == null) {
      throw new ApiError(`${url.pathname}: ${errs.map((e) => e.msg || JSON.stringify(e)).join('; ')}`);
    }
    return body;
  }

  // ------------------------------------------------------------------ banner

  const banner = {
    show(message) {
      document.getElementById('banner-text').textContent = message;
      document.getElementById('banner').hidden = false;
    },
    hide() { document.getElementById('banner').hidden = true; },
  };

  // ------------------------------------------------------------------ collector status

  /** The collector's own /api/stats (absent on other Jaeger-compatible backends). */
  const collectorStats = {
    last: null,
    ready: null,
    async refresh() {
      const el = document.getElementById('collector-status');
      try {
        const st = await api('/api/stats');
        this.last = st;
        const sum = (o) => Object.values(o || {}).reduce((a, b) => a + (Number(b) || 0), 0);
        const stored = Number(st.store && st.store.spans != null ? st.store.spans : st.stored) || 0;
        const problems = sum(st.rejected) + (Number(st.dropped) || 0) + (Number(st.write_errors) || 0);
        el.textContent = `${stored.toLocaleString()} spans stored`;
        el.classList.toggle('has-problems', problems > 0);
        el.title = [
          `Received: ${sum(st.received).toLocaleString()}`,
          `Rejected: ${sum(st.rejected).toLocaleString()}`,
          `Dropped: ${(Number(st.dropped) || 0).toLocaleString()}`,
          `Write errors: ${(Number(st.write_errors) || 0).toLocaleString()}`,
          st.store && st.store.path ? `Store: ${st.store.path}` : null,
        ].filter(Boolean).join('\n');
        el.hidden = false;
      } catch (_e) {
        el.hidden = true;
      }
      return this.last;
    },
  };

  // ------------------------------------------------------------------ trace model

  function tagValue(tags, key) {
    const t = (tags || []).find((x) => x.key === key);
    return t ? t.value : undefined;
  }

  function isErrorSpan(span) {
    for (const t of span.tags || []) {
      if (t.key === 'error' && (t.value === true || String(t.value).toLowerCase() === 'true')) return true;
      if (t.key === 'otel.status_code' && String(t.value).toUpperCase() === 'ERROR') return true;
    }
    return false;
  }

  /** Turn a Jaeger JSON trace into a tree with derived data. */
  function buildTrace(raw) {
    const processes = raw.processes || {};
    const spans = (raw.spans || []).map((sp) => {
      const proc = processes[sp.processID] || sp.process || { serviceName: 'unknown-service', tags: [] };
      return {
        raw: sp,
        traceID: sp.traceID || raw.traceID,
        spanID: String(sp.spanID),
        operationName: sp.operationName == null ? '' : String(sp.operationName),
        references: Array.isArray(sp.references) ? sp.references : [],
        startTime: Number(sp.startTime) || 0,
        duration: Math.max(0, Number(sp.duration) || 0),
        tags: Array.isArray(sp.tags) ? sp.tags : [],
        logs: Array.isArray(sp.logs) ? sp.logs : [],
        warnings: Array.isArray(sp.warnings) ? sp.warnings : [],
        process: proc,
        service: String(proc.serviceName || 'unknown-service'),
        children: [],
        parent: null,
        depth: 0,
        isError: false,
      };
    });
    const byId = new Map();
    for (const sp of spans) if (!byId.has(sp.spanID)) byId.set(sp.spanID, sp);
    for (const sp of spans) sp.isError = isErrorSpan(sp);

    const roots = [];
    for (const sp of spans) {
      const refs = sp.references.filter((r) => r && byId.has(String(r.spanID)) && String(r.spanID) !== sp.spanID);
      const ref = refs.find((r) => r.refType === 'CHILD_OF') || refs[0];
      if (ref) {
        sp.parent = byId.get(String(ref.spanID));
        sp.parent.children.push(sp);
      } else {
        roots.push(sp);
      }
    }
    const byStart = (a, b) => a.startTime - b.startTime;
    roots.sort(byStart);

    // Depth-first order; a visited set guards against reference cycles.
    const ordered = [];
    const visited = new Set();
    let maxDepth = 0;
    const walk = (sp, depth) => {
      if (visited.has(sp)) return;
      visited.add(sp);
      sp.depth = depth;
      maxDepth = Math.max(maxDepth, depth);
      ordered.push(sp);
      sp.children.sort(byStart);
      for (const c of sp.children) walk(c, depth + 1);
    };
    for (const r of roots) walk(r, 0);
    for (const sp of spans) {
      if (!visited.has(sp)) { // part of a cycle: show it as a root
        if (sp.parent) sp.parent.children = sp.parent.children.filter((c) => c !== sp);
        sp.parent = null;
        roots.push(sp);
        walk(sp, 0);
      }
    }

    let start = Infinity;
    let end = -Infinity;
    for (const sp of spans) {
      start = Math.min(start, sp.startTime);
      end = Math.max(end, sp.startTime + sp.duration);
    }
    if (!spans.length) { start = 0; end = 0; }

    const services = new Map();
    for (const sp of ordered) {
      const e = services.get(sp.service) || { name: sp.service, count: 0, errors: 0 };
      e.count += 1;
      if (sp.isError) e.errors += 1;
      services.set(sp.service, e);
    }
    const root = roots[0] || null;
    return {
      traceID: raw.traceID || (spans[0] && spans[0].traceID) || '',
      spans: ordered,
      byId,
      roots,
      root,
      start,
      end,
      duration: Math.max(0, end - start),
      depth: spans.length ? maxDepth + 1 : 0,
      services: [...services.values()],
      errorCount: ordered.filter((sp) => sp.isError).length,
      warnings: Array.isArray(raw.warnings) ? raw.warnings : [],
      raw,
    };
  }

  // ------------------------------------------------------------------ search form helpers

  /**
   * Parse "key=value key2=value2" (values may be double-quoted to contain
   * spaces) into the JSON object Jaeger's `tags` query parameter expects.
   */
  function parseTags(input) {
    const out = {};
    const text = (input || '').trim();
    if (!text) return out;
    const re = /\s*([^\s=]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))\s*/y;
    let pos = 0;
    while (pos < text.length) {
      re.lastIndex = pos;
      const m = re.exec(text);
      if (!m) {
        const bad = text.slice(pos).trim().split(/\s+/)[0];
        throw new Error(`Invalid tag "${bad}": use key=value, separated by spaces`);
      }
      out[m[1]] = m[2] != null ? m[2].replace(/\\(.)/g, '$1') : m[3];
      pos = re.lastIndex;
    }
    return out;
  }

  const DURATION_RE = /^\d+(\.\d+)?(us|µs|ms|s|m|h)$/;

  const LOOKBACKS = [
    ['5m', 'Last 5 minutes'], ['15m', 'Last 15 minutes'], ['30m', 'Last 30 minutes'],
    ['1h', 'Last hour'], ['2h', 'Last 2 hours'], ['6h', 'Last 6 hours'],
    ['12h', 'Last 12 hours'], ['24h', 'Last 24 hours'], ['48h', 'Last 2 days'],
    ['168h', 'Last 7 days'],
  ];

  function lookbackMs(lb) {
    const m = /^(\d+)(m|h|d)$/.exec(lb || '');
    if (!m) return 3600e3;
    return Number(m[1]) * { m: 60e3, h: 3600e3, d: 86400e3 }[m[2]];
  }

  // ------------------------------------------------------------------ search view

  const searchState = {
    el: null,
    servicesLoaded: false,
    lastQuery: null,
    traces: [],
    sort: 'recent',
  };

  function buildSearchView() {
    const serviceSel = h('select', { id: 'service-select', name: 'service', required: true },
      h('option', { value: '' }, 'Loading…'));
    const opSel = h('select', { id: 'operation-select', name: 'operation' },
      h('option', { value: '' }, 'all'));
    const tagsIn = h('input', {
      id: 'tags-input', name: 'tags', type: 'text', spellcheck: 'false',
      placeholder: 'http.status_code=500 error=true',
    });
    const lookSel = h('select', { id: 'lookback-select', name: 'lookback' },
      LOOKBACKS.map(([v, label]) => h('option', { value: v, selected: v === '1h' }, label)));
    const minIn = h('input', { id: 'min-duration', name: 'minDuration', type: 'text', placeholder: 'e.g. 1.2s, 100ms' });
    const maxIn = h('input', { id: 'max-duration', name: 'maxDuration', type: 'text', placeholder: 'e.g. 1.1s' });
    const limitIn = h('input', { id: 'limit-input', name: 'limit', type: 'number', min: '1', max: '1500', value: '20' });
    const formError = h('p', { class: 'form-error', id: 'form-error', role: 'alert', hidden: true });
    const submit = h('button', { id: 'search-button', class: 'btn btn-primary', type: 'submit' }, 'Find Traces');

    const field = (label, control, hint) => h('label', { class: 'field' },
      h('span', { class: 'field-label' }, label), control,
      hint ? h('span', { class: 'field-hint' }, hint) : null);

    const form = h('form', { id: 'search-form', class: 'search-form', autocomplete: 'off', novalidate: true },
      field('Service', serviceSel),
      field('Operation', opSel),
      field('Tags', tagsIn, 'Space-separated key=value; quote values with spaces.'),
      field('Lookback', lookSel),
      h('div', { class: 'field-row' },
        field('Min Duration', minIn),
        field('Max Duration', maxIn)),
      field('Limit Results', limitIn),
      formError,
      submit);

    const results = h('section', { class: 'results', id: 'results', 'aria-live': 'polite' });
    const el = h('div', { class: 'search-layout', id: 'search-view' },
      h('aside', { class: 'panel search-panel' }, h('h2', { class: 'panel-title' }, 'Search'), form),
      results);

    serviceSel.addEventListener('change', () => loadOperations(serviceSel.value));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const q = readForm();
      if (!q) return;
      const url = `/search?${new URLSearchParams(q.urlParams).toString()}`;
      if (location.pathname + location.search === url) history.replaceState(history.state, '', url);
      else history.pushState({}, '', url);
      runSearch(q);
    });
    searchState.el = el;
    searchState.form = form;
    renderResultsIntro();
    return el;
  }

  function formEls() {
    const f = searchState.form;
    return {
      service: f.querySelector('#service-select'),
      operation: f.querySelector('#operation-select'),
      tags: f.querySelector('#tags-input'),
      lookback: f.querySelector('#lookback-select'),
      minDuration: f.querySelector('#min-duration'),
      maxDuration: f.querySelector('#max-duration'),
      limit: f.querySelector('#limit-input'),
      error: f.querySelector('#form-error'),
    };
  }

  function showFormError(msg) {
    const { error } = formEls();
    error.textContent = msg || '';
    error.hidden = !msg;
  }

  /** Validate the form; return {apiParams, urlParams} or null. */
  function readForm() {
    const f = formEls();
    showFormError('');
    const service = f.service.value;
    if (!service) { showFormError('Select a service first.'); return null; }
    let tags;
    try { tags = parseTags(f.tags.value); } catch (e) { showFormError(e.message); return null; }
    const minD = f.minDuration.value.trim();
    const maxD = f.maxDuration.value.trim();
    for (const [name, v] of [['Min duration', minD], ['Max duration', maxD]]) {
      if (v && !DURATION_RE.test(v)) {
        showFormError(`${name} "${v}" is not a duration (use e.g. 500us, 12ms, 1.5s).`);
        return null;
      }
    }
    const limit = parseInt(f.limit.value, 10);
    if (!(limit >= 1 && limit <= 1500)) { showFormError('Limit must be between 1 and 1500.'); return null; }
    const urlParams = { service, lookback: f.lookback.value, limit: String(limit) };
    if (f.operation.value) urlParams.operation = f.operation.value;
    if (f.tags.value.trim()) urlParams.tags = f.tags.value.trim();
    if (minD) urlParams.minDuration = minD;
    if (maxD) urlParams.maxDuration = maxD;
    return { urlParams, tags };
  }

  function apiParamsFrom(urlParams, tagsObj) {
    const endUs = Date.now() * 1000;
    const p = {
      service: urlParams.service,
      operation: urlParams.operation || '',
      lookback: urlParams.lookback || '1h',
      limit: urlParams.limit || '20',
      minDuration: urlParams.minDuration || '',
      maxDuration: urlParams.maxDuration || '',
      start: Math.floor(endUs - lookbackMs(urlParams.lookback) * 1000),
      end: endUs,
    };
    if (tagsObj && Object.keys(tagsObj).length) p.tags = JSON.stringify(tagsObj);
    return p;
  }

  async function loadServices() {
    const { service } = formEls();
    try {
      const body = await api('/api/services');
      const names = (Array.isArray(body.data) ? body.data : []).map(String).sort();
      names.forEach(colourFor);
      clear(service);
      if (!names.length) {
        service.append(h('option', { value: '' }, 'No services yet'));
        service.disabled = true;
        renderResultsIntro();
      } else {
        service.disabled = false;
        service.append(h('option', { value: '' }, 'Select a service…'));
        for (const n of names) service.append(h('option', { value: n }, n));
        let preferred = '';
        try { preferred = localStorage.getItem('aiecs.lastService') || ''; } catch (_e) { /* ignore */ }
        if (preferred && names.includes(preferred)) {
          service.value = preferred;
          await loadOperations(preferred);
        }
      }
      searchState.servicesLoaded = true;
      return names;
    } catch (e) {
      clear(service);
      service.append(h('option', { value: '' }, 'Unavailable'));
      banner.show(`Could not load services: ${e.message}`);
      renderResultsMessage('error', 'Could not load services', e.message);
      return null;
    }
  }

  let operationsToken = 0;

  async function loadOperations(service, selected) {
    const { operation } = formEls();
    const token = ++operationsToken;
    clear(operation);
    operation.append(h('option', { value: '' }, 'all'));
    if (!service) return;
    try { localStorage.setItem('aiecs.lastService', service); } catch (_e) { /* ignore */ }
    try {
      const body = await api(`/api/services/${encodeURIComponent(service)}/operations`);
      if (token !== operationsToken) return; // the service changed again meanwhile
      const ops = (Array.isArray(body.data) ? body.data : [])
        .map((o) => (o && typeof o === 'object' ? o.name : o)).map(String);
      [...new Set(ops)].sort().forEach((o) => operation.append(h('option', { value: o }, o)));
      if (selected) operation.value = selected;
    } catch (e) {
      banner.show(`Could not load operations for ${service}: ${e.message}`);
    }
  }

  function renderResultsIntro() {
    const results = searchState.el && searchState.el.querySelector('#results');
    if (!results) return;
    const { service } = formEls();
    if (service.disabled) {
      const ports = collectorStats.last && collectorStats.last.ports;
      const host = location.hostname;
      const where = ports && ports.otlp_http
        ? `Send spans with OTLP/HTTP to http://${host}:${ports.otlp_http}/v1/traces` +
          (ports.jaeger_udp ? ` or Jaeger thrift-compact over UDP to ${host}:${ports.jaeger_udp}` : '') + '.'
        : 'Point an OTLP exporter at this collector (HTTP /v1/traces) and the services will show up here.';
      renderResultsMessage('empty', 'No traces received yet', where);
      return;
    }
    renderResultsMessage('intro', 'Find traces',
      'Pick a service and press “Find Traces” to list recent traces.');
  }

  function renderResultsMessage(kind, title, detail) {
    const results = searchState.el.querySelector('#results');
    clear(results);
    results.append(h('div', { class: `empty-state empty-${kind}` },
      emptyIcon(kind),
      h('h3', null, title),
      detail ? h('p', null, detail) : null));
  }

  function emptyIcon(kind) {
    if (kind === 'error') {
      return s('svg', { class: 'empty-icon is-error', viewBox: '0 0 24 24', width: 40, height: 40, 'aria-hidden': 'true' },
        s('circle', { cx: 12, cy: 12, r: 10, fill: 'none', 'stroke-width': 1.6 }),
        s('path', { d: 'M12 7v6M12 16.5v.5', 'stroke-width': 2, 'stroke-linecap': 'round' }));
    }
    if (kind === 'loading') return h('div', { class: 'spinner', 'aria-hidden': 'true' });
    return s('svg', { class: 'empty-icon', viewBox: '0 0 24 24', width: 40, height: 40, 'aria-hidden': 'true' },
      s('rect', { x: 3, y: 5, width: 11, height: 3, rx: 1 }),
      s('rect', { x: 7, y: 10.5, width: 13, height: 3, rx: 1 }),
      s('rect', { x: 11, y: 16, width: 7, height: 3, rx: 1 }));
  }

  async function runSearch(q) {
    const apiParams = apiParamsFrom(q.urlParams, q.tags);
    const key = new URLSearchParams(q.urlParams).toString();
    searchState.lastQuery = key;
    renderResultsMessage('loading', 'Searching…', null);
    try {
      const body = await api('/api/traces', apiParams);
      if (searchState.lastQuery !== key) return; // a newer search superseded this one
      const traces = (Array.isArray(body.data) ? body.data : []).map(buildTrace);
      searchState.traces = traces;
      renderResults();
    } catch (e) {
      if (searchState.lastQuery !== key) return;
      searchState.traces = [];
      searchState.lastQuery = null;
      renderResultsMessage('error', 'Search failed', e.message);
    }
  }

  const SORTS = {
    recent: ['Most Recent', (a, b) => b.start - a.start],
    longest: ['Longest First', (a, b) => b.duration - a.duration],
    shortest: ['Shortest First', (a, b) => a.duration - b.duration],
    spans: ['Most Spans', (a, b) => b.spans.length - a.spans.length],
    errors: ['Most Errors', (a, b) => b.errorCount - a.errorCount || b.start - a.start],
  };

  function renderResults() {
    const results = searchState.el.querySelector('#results');
    const traces = searchState.traces;
    clear(results);
    if (!traces.length) {
      renderResultsMessage('empty', 'No traces found',
        'Try a longer lookback, fewer tags, or a different service or operation.');
      return;
    }
    const sortSel = h('select', { id: 'sort-select', 'aria-label': 'Sort traces' },
      Object.entries(SORTS).map(([k, [label]]) => h('option', { value: k, selected: k === searchState.sort }, label)));
    sortSel.addEventListener('change', () => { searchState.sort = sortSel.value; renderResults(); });

    const sorted = [...traces].sort(SORTS[searchState.sort][1]);
    const maxDur = Math.max(1, ...traces.map((t) => t.duration));
    results.append(
      h('div', { class: 'panel results-panel' },
        h('div', { class: 'results-header' },
          h('h2', { class: 'panel-title', id: 'results-count' }, plural(traces.length, 'Trace')),
          h('label', { class: 'sort-label' }, 'Sort ', sortSel)),
        scatterPlot(traces)),
      h('ol', { class: 'trace-list', id: 'trace-list' }, sorted.map((t) => traceListItem(t, maxDur))));
  }

  function traceListItem(t, maxDur) {
    const root = t.root;
    const title = root
      ? [h('span', { class: 'ti-service' }, root.service), ': ', h('span', { class: 'ti-op' }, root.operationName)]
      : [h('span', { class: 'ti-op' }, '<trace without spans>')];
    const pct = Math.max(0.5, (t.duration / maxDur) * 100);
    return h('li', { class: `trace-item${t.errorCount ? ' has-errors' : ''}`, dataset: { traceId: t.traceID } },
      h('a', { class: 'trace-link', href: `/trace/${encodeURIComponent(t.traceID)}`, 'data-nav': true },
        h('div', { class: 'ti-head' },
          h('div', { class: 'ti-bar', style: { width: `${pct}%` }, 'aria-hidden': 'true' }),
          h('span', { class: 'ti-title' }, title,
            h('span', { class: 'ti-id mono', title: t.traceID }, shortId(t.traceID))),
          h('span', { class: 'ti-duration' }, fmtDuration(t.duration))),
        h('div', { class: 'ti-body' },
          h('div', { class: 'ti-badges' },
            h('span', { class: 'badge' }, plural(t.spans.length, 'Span')),
            t.errorCount ? h('span', { class: 'badge badge-error' }, plural(t.errorCount, 'Error')) : null,
            t.services.map((sv) => serviceChip(sv.name, sv.count))),
          h('div', { class: 'ti-time' },
            h('span', { class: 'ti-start' }, fmtTimestamp(t.start)),
            h('span', { class: 'ti-ago' }, fmtAgo(t.start))))));
  }

  /** Duration-over-time scatter plot of the search results. */
  function scatterPlot(traces) {
    const W = 900; const H = 150;
    const m = { l: 56, r: 16, t: 16, b: 24 };
    const t0 = Math.min(...traces.map((t) => t.start));
    const t1 = Math.max(...traces.map((t) => t.start));
    const dMax = Math.max(1, ...traces.map((t) => t.duration));
    const span = Math.max(1, t1 - t0);
    const x = (v) => m.l + (traces.length === 1 ? 0.5 : (v - t0) / span) * (W - m.l - m.r);
    const y = (v) => H - m.b - (v / dMax) * (H - m.t - m.b);
    const svg = s('svg', { class: 'scatter', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'xMidYMid meet', role: 'img', 'aria-label': 'Trace durations over time' });
    for (let i = 0; i <= 2; i++) {
      const v = (dMax * i) / 2;
      svg.append(s('line', { class: 'grid', x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }),
        s('text', { class: 'axis-label', x: m.l - 8, y: y(v) + 4, 'text-anchor': 'end' }, fmtDuration(v)));
    }
    svg.append(
      s('text', { class: 'axis-label', x: m.l, y: H - 6 }, fmtClock(t0)),
      s('text', { class: 'axis-label', x: W - m.r, y: H - 6, 'text-anchor': 'end' }, fmtClock(t1)));
    for (const t of traces) {
      const r = Math.min(9, 3.5 + Math.sqrt(t.spans.length));
      const dot = s('circle', {
        class: `dot${t.errorCount ? ' is-error' : ''}`, cx: x(t.start), cy: y(t.duration), r,
        tabindex: 0,
      }, s('title', null, `${t.root ? `${t.root.service}: ${t.root.operationName}` : t.traceID} · ${fmtDuration(t.duration)}`));
      const open = () => navigate(`/trace/${encodeURIComponent(t.traceID)}`);
      dot.addEventListener('click', open);
      dot.addEventListener('keydown', (e) => { if (e.key === 'Enter') open(); });
      svg.append(dot);
    }
    return h('div', { class: 'scatter-wrap' }, svg);
  }

  async function showSearch(params) {
    if (!searchState.el) buildSearchView();
    mount(searchState.el, 'search');
    document.title = 'Search · aiecs-tracing';
    if (!searchState.servicesLoaded) {
      await collectorStats.ready; // its ports feed the "no data yet" hint
      await loadServices();
    }
    const service = params.get('service');
    if (!service) return;
    const key = params.toString();
    const f = formEls();
    // Restore the form from the URL (deep links, back/forward).
    if (f.service.value !== service) {
      if (![...f.service.options].some((o) => o.value === service)) {
        f.service.append(h('option', { value: service }, service));
      }
      f.service.value = service;
      await loadOperations(service, params.get('operation') || '');
    } else {
      f.operation.value = params.get('operation') || '';
    }
    f.tags.value = params.get('tags') || '';
    f.lookback.value = params.get('lookback') || '1h';
    f.minDuration.value = params.get('minDuration') || '';
    f.maxDuration.value = params.get('maxDuration') || '';
    f.limit.value = params.get('limit') || '20';
    if (key === searchState.lastQuery && searchState.traces.length) return; // cached results
    const q = readForm();
    if (q) runSearch(q);
  }

  // ------------------------------------------------------------------ trace view

  const traceState = { trace: null, collapsed: new Set(), selected: null, filter: '' };

  async function showTrace(traceID) {
    const el = h('div', { class: 'trace-view', id: 'trace-view' },
      h('div', { class: 'empty-state empty-loading' }, emptyIcon('loading'), h('h3', null, 'Loading trace…')));
    mount(el, 'trace');
    document.title = `Trace ${shortId(traceID)} · aiecs-tracing`;
    let raw;
    try {
      const body = await api(`/api/traces/${encodeURIComponent(traceID)}`);
      raw = Array.isArray(body.data) ? body.data[0] : null;
    } catch (e) {
      if (!el.isConnected) return;
      if (e.status === 404) {
        raw = null;
      } else {
        clear(el).append(h('div', { class: 'empty-state empty-error' }, emptyIcon('error'),
          h('h3', null, 'Could not load trace'), h('p', { class: 'mono' }, traceID), h('p', null, e.message),
          backButton()));
        return;
      }
    }
    if (!el.isConnected) return; // user navigated away meanwhile
    if (!raw || !Array.isArray(raw.spans) || !raw.spans.length) {
      clear(el).append(h('div', { class: 'empty-state empty-empty' }, emptyIcon('empty'),
        h('h3', null, 'Trace not found'), h('p', { class: 'mono' }, traceID),
        h('p', null, 'It may have expired or not been received yet.'), backButton()));
      return;
    }
    const trace = buildTrace(raw);
    trace.services.forEach((sv) => colourFor(sv.name));
    traceState.trace = trace;
    traceState.collapsed = new Set();
    traceState.selected = null;
    traceState.filter = '';
    if (trace.root) document.title = `${trace.root.service}: ${trace.root.operationName} · aiecs-tracing`;
    clear(el).append(traceHeader(trace), waterfall(trace));
    renderRows();
  }

  function backButton() {
    return h('button', {
      class: 'btn btn-ghost back-btn', type: 'button', title: 'Back to search',
      onclick: () => {
        if (history.state && history.state.nav) history.back();
        else navigate('/search');
      },
    }, '← Search');
  }

  function traceHeader(t) {
    const stat = (label, value, cls) => h('div', { class: `stat ${cls || ''}` },
      h('dt', null, label), h('dd', null, value));
    const filterIn = h('input', {
      id: 'span-filter', type: 'search', class: 'span-filter', placeholder: 'Find in trace…',
      spellcheck: 'false', 'aria-label': 'Find spans in trace',
    });
    filterIn.addEventListener('input', () => {
      traceState.filter = filterIn.value.trim().toLowerCase();
      // Reveal matches hidden inside collapsed subtrees.
      for (const sp of t.spans) {
        if (!spanMatches(sp, traceState.filter)) continue;
        for (let p = sp.parent; p; p = p.parent) traceState.collapsed.delete(p.spanID);
      }
      renderRows();
    });
    return h('div', { class: 'panel trace-header', id: 'trace-header' },
      h('div', { class: 'trace-title-row' },
        backButton(),
        h('h1', { class: 'trace-title' },
          t.root ? [h('span', { class: 'tt-service', style: { color: colourFor(t.root.service) } }, t.root.service), ': ',
            h('span', { class: 'tt-op' }, t.root.operationName)] : 'Trace',
          h('span', { class: 'trace-id mono', id: 'trace-id', title: 'Trace ID' }, t.traceID)),
        h('a', {
          class: 'btn btn-ghost', href: `/api/traces/${encodeURIComponent(t.traceID)}`, target: '_blank',
          rel: 'noopener', title: 'Raw Jaeger JSON',
        }, 'JSON')),
      h('dl', { class: 'trace-stats', id: 'trace-stats' },
        stat('Trace Start', fmtTimestamp(t.start)),
        stat('Duration', fmtDuration(t.duration)),
        stat('Services', String(t.services.length)),
        stat('Depth', String(t.depth)),
        stat('Total Spans', String(t.spans.length)),
        stat('Errors', String(t.errorCount), t.errorCount ? 'stat-error' : '')),
      h('div', { class: 'trace-toolbar' },
        h('div', { class: 'svc-legend', id: 'svc-legend' }, t.services.map((sv) => serviceChip(sv.name, sv.count))),
        h('div', { class: 'toolbar-actions' },
          h('span', { class: 'filter-count muted', id: 'filter-count', 'aria-live': 'polite' }),
          filterIn,
          h('button', { class: 'btn btn-ghost', type: 'button', id: 'expand-all', onclick: () => { traceState.collapsed.clear(); renderRows(); } }, 'Expand all'),
          h('button', {
            class: 'btn btn-ghost', type: 'button', id: 'collapse-all',
            onclick: () => { collapseBelowRoots(t); renderRows(); },
          }, 'Collapse all'))),
      t.warnings.length ? h('ul', { class: 'warnings' }, t.warnings.map((w) => h('li', null, String(w)))) : null);
  }

  function collapseBelowRoots(t) {
    // "Collapse all" keeps roots open so their direct children stay visible.
    traceState.collapsed.clear();
    for (const sp of t.spans) if (sp.children.length && sp.depth >= 1) traceState.collapsed.add(sp.spanID);
    if (!traceState.collapsed.size) for (const r of t.roots) if (r.children.length) traceState.collapsed.add(r.spanID);
  }

  const TICKS = 5;

  function waterfall(t) {
    const ticks = [];
    for (let i = 0; i < TICKS; i++) {
      const frac = i / (TICKS - 1);
      ticks.push(h('span', {
        class: `tick${i === TICKS - 1 ? ' tick-last' : ''}`, style: { left: `${frac * 100}%` },
      }, fmtDuration(t.duration * frac)));
    }
    return h('div', { class: 'panel waterfall', id: 'waterfall' },
      h('div', { class: 'wf-header' },
        h('div', { class: 'wf-name-col' }, 'Service & Operation'),
        h('div', { class: 'wf-time-col' }, h('div', { class: 'wf-ticks' }, ticks))),
      h('div', { class: 'wf-rows', id: 'wf-rows', role: 'tree' }));
  }

  function countDescendants(sp) {
    let n = 0;
    const stack = [...sp.children];
    while (stack.length) { const c = stack.pop(); n += 1; stack.push(...c.children); }
    return n;
  }

  function spanMatches(sp, f) {
    if (!f) return false;
    if (sp.operationName.toLowerCase().includes(f) || sp.service.toLowerCase().includes(f) || sp.spanID.toLowerCase().includes(f)) return true;
    return sp.tags.some((tg) => `${tg.key}=${fmtValue(tg.value)}`.toLowerCase().includes(f));
  }

  function renderRows() {
    const t = traceState.trace;
    const rows = document.getElementById('wf-rows');
    if (!t || !rows) return;
    clear(rows);
    const hiddenUnder = new Set();
    const total = Math.max(1, t.duration);
    const f = traceState.filter;
    let matchCount = 0;
    for (const sp of t.spans) {
      if (sp.parent && (hiddenUnder.has(sp.parent.spanID) || traceState.collapsed.has(sp.parent.spanID))) {
        hiddenUnder.add(sp.spanID);
        continue;
      }
      const collapsed = traceState.collapsed.has(sp.spanID);
      const left = ((sp.startTime - t.start) / total) * 100;
      const width = (sp.duration / total) * 100;
      const colour = colourFor(sp.service);
      const match = spanMatches(sp, f);
      if (match) matchCount += 1;
      const selected = traceState.selected === sp.spanID;
      const toggle = sp.children.length
        ? h('button', {
          class: 'toggle', type: 'button', 'aria-expanded': String(!collapsed),
          title: collapsed ? `Expand (${countDescendants(sp)} hidden)` : 'Collapse',
          onclick: (e) => {
            e.stopPropagation();
            if (traceState.collapsed.has(sp.spanID)) traceState.collapsed.delete(sp.spanID);
            else traceState.collapsed.add(sp.spanID);
            renderRows();
          },
        }, s('svg', { viewBox: '0 0 10 10', width: 10, height: 10, 'aria-hidden': 'true' },
          s('path', { d: collapsed ? 'M3 1.5 L7 5 L3 8.5' : 'M1.5 3 L5 7 L8.5 3' })))
        : h('span', { class: 'toggle-spacer' });
      const labelRight = left + width > 75;
      const row = h('div', {
        class: `span-row${sp.isError ? ' is-error' : ''}${selected ? ' is-selected' : ''}${match ? ' is-match' : ''}${f && !match ? ' is-dimmed' : ''}`,
        role: 'treeitem', tabindex: 0, 'aria-level': sp.depth + 1, 'aria-selected': String(selected),
        dataset: { spanId: sp.spanID, depth: String(sp.depth) },
        title: `${sp.service}: ${sp.operationName}`,
      },
      h('div', { class: 'span-name', style: { paddingLeft: `${8 + sp.depth * 16}px`, borderLeftColor: colour } },
        indentGuides(sp.depth),
        toggle,
        h('span', { class: 'span-service', style: { color: colour } }, sp.service),
        h('span', { class: 'span-op' }, sp.operationName),
        sp.isError ? h('span', { class: 'err-icon', title: 'Error', 'aria-label': 'error' }, '!') : null,
        collapsed ? h('span', { class: 'hidden-count' }, `+${countDescendants(sp)}`) : null),
      h('div', { class: 'span-timeline' },
        h('div', { class: 'tl-grid', 'aria-hidden': 'true' }),
        h('div', {
          class: 'span-bar',
          style: { left: `${left}%`, width: `max(2px, ${width}%)`, background: sp.isError ? null : colour },
        }),
        h('span', {
          class: `span-bar-label${labelRight ? ' label-left' : ''}`,
          style: labelRight ? { right: `${100 - left}%` } : { left: `calc(${left + width}% + 6px)` },
        }, fmtDuration(sp.duration))));
      const toggleSelect = () => {
        traceState.selected = traceState.selected === sp.spanID ? null : sp.spanID;
        renderRows();
        const again = rows.querySelector(`[data-span-id="${CSS.escape(sp.spanID)}"]`);
        if (again) again.focus({ preventScroll: true });
      };
      row.addEventListener('click', toggleSelect);
      row.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggleSelect(); }
        if ((e.key === 'ArrowLeft' || e.key === 'ArrowRight') && sp.children.length) {
          if (e.key === 'ArrowLeft') traceState.collapsed.add(sp.spanID); else traceState.collapsed.delete(sp.spanID);
          renderRows();
        }
      });
      rows.append(row);
      if (selected) rows.append(spanDetail(sp, t));
    }
    const filterIn = document.getElementById('span-filter');
    if (filterIn) filterIn.classList.toggle('no-match', Boolean(f) && matchCount === 0);
    const counter = document.getElementById('filter-count');
    if (counter) counter.textContent = f ? `${matchCount} of ${plural(t.spans.length, 'span')} match` : '';
  }

  function indentGuides(depth) {
    const out = [];
    for (let i = 0; i < depth; i++) {
      out.push(h('span', { class: 'indent-guide', style: { left: `${14 + i * 16}px` }, 'aria-hidden': 'true' }));
    }
    return out;
  }

  function kvTable(rows, cls) {
    if (!rows.length) return h('p', { class: 'muted' }, 'None');
    return h('table', { class: `kv ${cls || ''}` },
      h('tbody', null, rows.map(([k, v, vcls]) => h('tr', null,
        h('th', { scope: 'row' }, k), h('td', { class: vcls || '' }, v)))));
  }

  function tagRows(tags) {
    return [...tags]
      .sort((a, b) => String(a.key).localeCompare(String(b.key)))
      .map((tg) => [String(tg.key), fmtValue(tg.value), tg.key === 'error' || (tg.key === 'otel.status_code' && String(tg.value).toUpperCase() === 'ERROR') ? 'v-error' : '']);
  }

  function section(title, count, body, open) {
    return h('details', { class: 'sd-section', open: Boolean(open) },
      h('summary', null, title, count != null ? h('span', { class: 'count' }, String(count)) : null), body);
  }

  function spanDetail(sp, t) {
    const kind = tagValue(sp.tags, 'span.kind');
    const status = tagValue(sp.tags, 'otel.status_code');
    const statusDesc = tagValue(sp.tags, 'otel.status_description');
    const logs = [...sp.logs].sort((a, b) => (a.timestamp || 0) - (b.timestamp || 0));
    const logList = logs.length
      ? h('ol', { class: 'log-list' }, logs.map((lg) => {
        const fields = Array.isArray(lg.fields) ? lg.fields : [];
        const event = tagValue(fields, 'event');
        return h('li', { class: 'log-entry' },
          h('div', { class: 'log-head' },
            h('span', { class: 'log-ts mono' }, `+${fmtDuration((Number(lg.timestamp) || 0) - t.start)}`),
            event != null ? h('span', { class: 'log-event' }, fmtValue(event)) : null,
            h('span', { class: 'log-abs muted' }, fmtTimestamp(Number(lg.timestamp)))),
          kvTable(tagRows(fields)));
      }))
      : h('p', { class: 'muted' }, 'No logs');
    const refs = sp.references.map((r) => {
      const inTrace = t.byId.get(String(r.spanID));
      const target = inTrace
        ? h('button', {
          type: 'button', class: 'link-btn mono',
          onclick: (e) => { e.stopPropagation(); selectSpan(inTrace.spanID); },
        }, `${r.spanID} (${inTrace.service}: ${inTrace.operationName})`)
        : h('span', { class: 'mono' }, `${r.spanID}${r.traceID && r.traceID !== t.traceID ? ` in trace ${r.traceID}` : ' (not in trace)'}`);
      return [String(r.refType || 'CHILD_OF'), target];
    });
    const detail = h('div', {
      class: `span-detail${sp.isError ? ' is-error' : ''}`, id: 'span-detail', dataset: { spanId: sp.spanID },
      onclick: (e) => e.stopPropagation(),
    },
    h('div', { class: 'sd-head', style: { borderLeftColor: colourFor(sp.service) } },
      h('h3', { class: 'sd-title' },
        h('span', { class: 'span-service', style: { color: colourFor(sp.service) } }, sp.service), ' ',
        h('span', null, sp.operationName)),
      h('dl', { class: 'sd-meta' },
        h('div', null, h('dt', null, 'Duration'), h('dd', null, fmtDuration(sp.duration))),
        h('div', null, h('dt', null, 'Start'), h('dd', null, `+${fmtDuration(sp.startTime - t.start)}`)),
        kind != null ? h('div', null, h('dt', null, 'Kind'), h('dd', null, fmtValue(kind))) : null,
        status != null || sp.isError ? h('div', { class: sp.isError ? 'is-error' : '' },
          h('dt', null, 'Status'), h('dd', null, status != null ? fmtValue(status) : 'ERROR',
            statusDesc != null ? ` – ${fmtValue(statusDesc)}` : '')) : null,
        h('div', null, h('dt', null, 'Span ID'), h('dd', { class: 'mono' }, sp.spanID)))),
    h('div', { class: 'sd-body' },
      section('Tags', sp.tags.length, kvTable(tagRows(sp.tags), 'tags-table'), true),
      section(`Process: ${sp.service}`, (sp.process.tags || []).length,
        kvTable([['service.name', sp.service], ...tagRows(sp.process.tags || [])], 'process-table'), false),
      section('Logs', logs.length, logList, logs.length > 0),
      section('References', refs.length, kvTable(refs, 'refs-table'), false),
      sp.warnings.length ? section('Warnings', sp.warnings.length,
        h('ul', { class: 'warnings' }, sp.warnings.map((w) => h('li', null, String(w)))), true) : null));
    return detail;
  }

  function selectSpan(spanID) {
    const t = traceState.trace;
    // Make sure every ancestor is expanded so the span is visible.
    let p = t.byId.get(spanID);
    while (p && p.parent) { traceState.collapsed.delete(p.parent.spanID); p = p.parent; }
    traceState.selected = spanID;
    renderRows();
    const row = document.querySelector(`#wf-rows [data-span-id="${CSS.escape(spanID)}"]`);
    if (row) { row.scrollIntoView({ block: 'nearest' }); row.focus({ preventScroll: true }); }
  }

  // ------------------------------------------------------------------ dependencies view

  const depsState = { lookback: '24h' };

  async function showDependencies() {
    const lbSel = h('select', { id: 'deps-lookback', 'aria-label': 'Lookback' },
      LOOKBACKS.map(([v, label]) => h('option', { value: v, selected: v === depsState.lookback }, label)));
    const body = h('div', { class: 'deps-body', id: 'deps-body' });
    const el = h('div', { class: 'deps-view', id: 'deps-view' },
      h('div', { class: 'panel deps-header' },
        h('h1', { class: 'page-title' }, 'System architecture'),
        h('div', { class: 'deps-controls' },
          lbSel,
          h('button', { class: 'btn btn-ghost', type: 'button', onclick: () => loadDeps(body) }, 'Refresh'))),
      body);
    lbSel.addEventListener('change', () => { depsState.lookback = lbSel.value; loadDeps(body); });
    mount(el, 'dependencies');
    document.title = 'System architecture · aiecs-tracing';
    await loadDeps(body);
  }

  async function loadDeps(body) {
    clear(body).append(h('div', { class: 'empty-state empty-loading' }, emptyIcon('loading'), h('h3', null, 'Loading dependencies…')));
    let links;
    try {
      const res = await api('/api/dependencies', { endTs: Date.now(), lookback: lookbackMs(depsState.lookback) });
      links = (Array.isArray(res.data) ? res.data : [])
        .filter((d) => d && d.parent != null && d.child != null)
        .map((d) => ({ parent: String(d.parent), child: String(d.child), callCount: Number(d.callCount) || 0 }));
    } catch (e) {
      clear(body).append(h('div', { class: 'empty-state empty-error' }, emptyIcon('error'),
        h('h3', null, 'Could not load dependencies'), h('p', null, e.message)));
      return;
    }
    clear(body);
    if (!links.length) {
      body.append(h('div', { class: 'empty-state empty-empty' }, emptyIcon('empty'),
        h('h3', null, 'No service dependencies'),
        h('p', null, 'Dependencies appear once traces contain calls from one service to another within the lookback.')));
      return;
    }
    const nodes = [...new Set(links.flatMap((l) => [l.parent, l.child]))].sort();
    nodes.forEach(colourFor);
    const total = links.reduce((a, l) => a + l.callCount, 0);
    body.append(
      h('div', { class: 'panel deps-graph-panel' },
        h('p', { class: 'muted deps-summary' },
          `${plural(nodes.length, 'service')} · ${plural(links.length, 'dependency', 'dependencies')} · ${plural(total, 'call')}`),
        dependencyGraph(nodes, links)),
      h('div', { class: 'panel' },
        h('table', { class: 'data-table deps-table', id: 'deps-table' },
          h('thead', null, h('tr', null, h('th', null, 'Caller'), h('th', null, 'Callee'), h('th', { class: 'num' }, 'Calls'))),
          h('tbody', null, [...links].sort((a, b) => b.callCount - a.callCount).map((l) => h('tr', null,
            h('td', null, serviceChip(l.parent)), h('td', null, serviceChip(l.child)),
            h('td', { class: 'num' }, String(l.callCount))))))));
  }

  /** Layered left-to-right layout of the service graph as SVG. */
  function dependencyGraph(nodes, links) {
    // Break cycles: a depth-first walk from the entry services (fewest callers first)
    // marks each edge that closes a cycle as a back edge; the rest form a DAG.
    const key = (a, b) => `${a}\u0000${b}`;
    const out = new Map(nodes.map((x) => [x, []]));
    const indeg = new Map(nodes.map((x) => [x, 0]));
    for (const l of links) {
      if (l.parent === l.child) continue;
      out.get(l.parent).push(l.child);
      indeg.set(l.child, indeg.get(l.child) + 1);
    }
    const state = new Map(); // 1 = on the DFS stack, 2 = finished
    const back = new Set();
    const order = [];
    const dfs = (u) => {
      state.set(u, 1);
      for (const v of [...new Set(out.get(u))].sort()) {
        if (state.get(v) === 1) back.add(key(u, v));
        else if (!state.has(v)) dfs(v);
      }
      state.set(u, 2);
      order.push(u);
    };
    for (const s0 of [...nodes].sort((a, b) => indeg.get(a) - indeg.get(b) || a.localeCompare(b))) {
      if (!state.has(s0)) dfs(s0);
    }
    order.reverse(); // topological order of the DAG
    // Longest-path layering over the DAG edges.
    const layer = new Map(nodes.map((x) => [x, 0]));
    for (const u of order) {
      for (const v of out.get(u)) {
        if (!back.has(key(u, v))) layer.set(v, Math.max(layer.get(v), layer.get(u) + 1));
      }
    }
    const cols = [];
    for (const x of nodes) (cols[layer.get(x)] = cols[layer.get(x)] || []).push(x);
    for (let i = 0; i < cols.length; i++) cols[i] = cols[i] || [];
    // Barycentre sweeps (down, then up) to reduce edge crossings.
    const pos = new Map();
    const place = (col) => col.forEach((x, i) => pos.set(x, i - (col.length - 1) / 2));
    cols.forEach(place);
    const sweep = (ci, neighbours) => {
      const bary = (x) => {
        const ps = neighbours(x).filter((y) => pos.has(y)).map((y) => pos.get(y));
        return ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : pos.get(x);
      };
      const b = new Map(cols[ci].map((x) => [x, bary(x)]));
      cols[ci].sort((x, y) => b.get(x) - b.get(y) || x.localeCompare(y));
      place(cols[ci]);
    };
    const parentsOf = (x) => links.filter((l) => l.child === x && l.parent !== x).map((l) => l.parent);
    const childrenOf = (x) => links.filter((l) => l.parent === x && l.child !== x).map((l) => l.child);
    for (let ci = 1; ci < cols.length; ci++) sweep(ci, parentsOf);
    for (let ci = cols.length - 2; ci >= 0; ci--) sweep(ci, childrenOf);

    const nodeW = (name) => Math.min(220, Math.max(110, 26 + name.length * 7.4));
    const colW = Math.max(...nodes.map(nodeW)) + 150;
    const rowH = 96;
    const maxRows = Math.max(...cols.map((c) => c.length));
    const W = Math.max(600, cols.length * colW + 40);
    const H = Math.max(170, maxRows * rowH + 80);
    const xy = new Map();
    cols.forEach((col, ci) => {
      const x = 20 + ci * colW + (W - 40 - cols.length * colW) / 2 + colW / 2;
      for (const name of col) xy.set(name, { x, y: H / 2 + pos.get(name) * rowH, w: nodeW(name) });
    });

    const maxCalls = Math.max(1, ...links.map((l) => l.callCount));
    const svg = s('svg', {
      class: 'deps-graph', id: 'deps-graph', viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': 'Service dependency graph', style: { maxWidth: `${W}px` },
    },
    s('defs', null,
      s('marker', {
        id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 9, markerHeight: 9,
        markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse',
      }, s('path', { d: 'M0 0 L10 5 L0 10 z', class: 'arrow-head' }))));
    const edgeLayer = s('g', { class: 'edges' });
    const labelLayer = s('g', { class: 'edge-labels' });
    const nodeLayer = s('g', { class: 'nodes' });
    svg.append(edgeLayer, nodeLayer, labelLayer);

    // Boxes labels must not cover: the nodes, then each label already placed.
    const occupied = nodes.map((name) => {
      const p = xy.get(name);
      return { x: p.x - p.w / 2, y: p.y - 17, w: p.w, h: 34 };
    });
    const overlaps = (r) => occupied.some((o) => r.x < o.x + o.w && o.x < r.x + r.w && r.y < o.y + o.h && o.y < r.y + r.h);
    const bezier = (P, tt) => {
      const u = 1 - tt;
      const c = [u * u * u, 3 * u * u * tt, 3 * u * tt * tt, tt * tt * tt];
      return [0, 1].map((k) => c[0] * P[0][k] + c[1] * P[1][k] + c[2] * P[2][k] + c[3] * P[3][k]);
    };
    const lanes = new Map(); // spreads edges that share a detour

    // Draw the heaviest edges first so they get the best label spots.
    for (const l of [...links].sort((x, y) => y.callCount - x.callCount)) {
      const a = xy.get(l.parent); const b = xy.get(l.child);
      const sw = 1.2 + 2.8 * (Math.log(1 + l.callCount) / Math.log(1 + maxCalls));
      let P; // cubic Bézier control points
      let ts = [0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78];
      if (l.parent === l.child) {
        const x0 = a.x + a.w / 2 - 34; const y0 = a.y - 17;
        P = [[x0, y0], [x0 - 6, y0 - 34], [x0 + 30, y0 - 34], [x0 + 24, y0 - 1]];
      } else if (layer.get(l.child) > layer.get(l.parent)) {
        const x1 = a.x + a.w / 2; const x2 = b.x - b.w / 2 - 2;
        const cx = (x2 - x1) / 2;
        const between = nodes.filter((x) => layer.get(x) > layer.get(l.parent) && layer.get(x) < layer.get(l.child));
        if (!between.length) {
          P = [[x1, a.y], [x1 + cx, a.y], [x2 - cx, b.y], [x2, b.y]];
        } else {
          // Edges skipping layers pass above or below the nodes in between, whichever is nearer.
          const ys = between.map((x) => xy.get(x).y);
          const avg = (a.y + b.y) / 2;
          const above = Math.abs(avg - (Math.min(...ys) - 33)) <= Math.abs(Math.max(...ys) + 33 - avg);
          const laneKey = `${above}:${between.join(',')}`;
          const lane = lanes.get(laneKey) || 0;
          lanes.set(laneKey, lane + 1);
          const target = above ? Math.min(...ys) - 33 - lane * 14 : Math.max(...ys) + 33 + lane * 14;
          const cy = (target - 0.25 * avg) / 0.75; // puts the curve's midpoint at `target`
          P = [[x1, a.y], [x1 + cx, cy], [x2 - cx, cy], [x2, b.y]];
        }
      } else { // back edge or same layer: arc below the nodes
        const lane = lanes.get('back') || 0;
        lanes.set('back', lane + 1);
        const x1 = a.x; const x2 = b.x; const y1 = a.y + 17; const y2 = b.y + 19;
        const dip = Math.max(a.y, b.y) + 44 + lane * 14 + Math.abs(x2 - x1) * 0.08;
        P = [[x1, y1], [x1, dip], [x2, dip], [x2, y2]];
        ts = [0.5, 0.35, 0.65, 0.25, 0.75];
      }
      const d = `M${P[0][0]} ${P[0][1]} C ${P[1][0]} ${P[1][1]}, ${P[2][0]} ${P[2][1]}, ${P[3][0]} ${P[3][1]}`;
      edgeLayer.append(s('path', {
        class: 'edge', d, 'stroke-width': sw.toFixed(2), 'marker-end': 'url(#arrow)', dataset: { parent: l.parent, child: l.child },
      }, s('title', null, `${l.parent} → ${l.child}: ${l.callCount} calls`)));
      const label = String(l.callCount);
      const lw = 12 + label.length * 7;
      const box = (pt) => ({ x: pt[0] - lw / 2 - 2, y: pt[1] - 11, w: lw + 4, h: 22 });
      let at = bezier(P, ts[0]);
      for (const tt of ts) {
        const pt = bezier(P, tt);
        if (!overlaps(box(pt))) { at = pt; break; }
      }
      occupied.push(box(at));
      labelLayer.append(s('g', { class: 'edge-label', transform: `translate(${at[0].toFixed(1)} ${at[1].toFixed(1)})` },
        s('title', null, `${l.parent} → ${l.child}: ${l.callCount} calls`),
        s('rect', { x: -lw / 2, y: -9, width: lw, height: 18, rx: 9 }),
        s('text', { 'text-anchor': 'middle', y: 4 }, label)));
    }
    for (const name of nodes) {
      const p = xy.get(name);
      const label = name.length > 28 ? `${name.slice(0, 27)}…` : name;
      nodeLayer.append(s('g', { class: 'node', transform: `translate(${p.x} ${p.y})`, dataset: { service: name } },
        s('title', null, name),
        s('rect', { x: -p.w / 2, y: -17, width: p.w, height: 34, rx: 7 }),
        s('rect', { class: 'node-accent', x: -p.w / 2, y: -17, width: 5, height: 34, rx: 2, style: { fill: colourFor(name) } }),
        s('text', { 'text-anchor': 'middle', y: 4.5, x: 2 }, label)));
    }
    return h('div', { class: 'deps-graph-wrap' }, svg);
  }

  // ------------------------------------------------------------------ routing

  function mount(el, view) {
    const app = document.getElementById('app');
    if (app.firstChild !== el || app.childNodes.length !== 1) {
      clear(app).append(el);
    }
    document.body.dataset.view = view;
    for (const a of document.querySelectorAll('.main-nav a')) {
      a.classList.toggle('active', a.dataset.view === view);
    }
  }

  function route() {
    const path = location.pathname.replace(/\/+$/, '') || '/';
    const m = /^\/trace\/([^/]+)/.exec(path);
    if (m) {
      let id = m[1];
      try { id = decodeURIComponent(id); } catch (_e) { /* keep raw */ }
      return showTrace(id);
    }
    if (path === '/dependencies' || path === '/architecture') return showDependencies();
    return showSearch(new URLSearchParams(location.search));
  }

  function navigate(url) {
    history.pushState({ nav: true }, '', url);
    window.scrollTo(0, 0);
    return route();
  }

  function init() {
    document.addEventListener('click', (e) => {
      const a = e.target.closest && e.target.closest('a[data-nav]');
      if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      navigate(a.getAttribute('href'));
    });
    window.addEventListener('popstate', () => route());
    document.getElementById('banner-close').addEventListener('click', () => banner.hide());
    document.getElementById('lookup-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const input = document.getElementById('lookup-input');
      const id = input.value.trim().toLowerCase();
      if (!id) return;
      if (!/^[0-9a-f]{1,32}$/.test(id)) { banner.show(`"${input.value.trim()}" is not a hex trace ID.`); return; }
      input.value = '';
      navigate(`/trace/${id}`);
    });
    collectorStats.ready = collectorStats.refresh();
    route();
    setInterval(() => { if (!document.hidden) collectorStats.refresh(); }, 15000);
  }

  // Exposed for debugging and tests.
  window.aiecsTracing = { parseTags, buildTrace, fmtDuration };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
