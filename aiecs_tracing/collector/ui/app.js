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
    if (m < 60) return Math.round(sec - m * 60) ? `${m}m ${Math.round(sec - m * 60)}s` : `${m}m`;
    const hr = Math.floor(m / 60);
    return `${hr}h ${m - hr * 60}m`;
  }

  /** A rate per second: 3 significant digits, small rates per minute. */
  function fmtRate(perSec) {
    if (!Number.isFinite(perSec) || perSec === 0) return '0/s';
    if (perSec < 0.1) return `${parseFloat((perSec * 60).toPrecision(2))}/min`;
    return `${parseFloat(perSec.toPrecision(3))}/s`;
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

  // One colour per service on every page, stable across reloads and sessions: a hash
  // of the name picks from a palette that leaves red to errors.
  const PALETTE = [
    '#3b7dd8', '#e08a1e', '#2e9e6a', '#8e5cc9', '#17a2b8', '#c2477f',
    '#7a8c2a', '#5b6bd6', '#b5651d', '#2b8a8a', '#a04ac0', '#6b7f99',
    '#d4a017', '#4f9d3a', '#0f6fa8', '#9c6644',
  ];
  const serviceColours = new Map();

  function hashString(text) {
    let h32 = 0x811c9dc5; // FNV-1a
    for (let i = 0; i < text.length; i++) {
      h32 ^= text.charCodeAt(i);
      h32 = Math.imul(h32, 0x01000193) >>> 0;
    }
    return h32;
  }

  function colourFor(service) {
    let c = serviceColours.get(service);
    if (!c) {
      c = PALETTE[hashString(String(service)) % PALETTE.length];
      serviceColours.set(service, c);
    }
    return c;
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
    if (text.startsWith('{')) { // Jaeger's own URL form: tags={"error":"true"}
      let obj = null;
      try { obj = JSON.parse(text); } catch (_e) { obj = null; }
      if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new Error(`Invalid tags JSON: ${text.slice(0, 60)}`);
      for (const [k, v] of Object.entries(obj)) out[k] = typeof v === 'string' ? v : fmtValue(v);
      return out;
    }
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

  /** Tags as the form shows them: key=value pairs, values with spaces or quotes quoted. */
  function tagsText(obj) {
    return Object.entries(obj).map(([k, v]) => {
      const text = String(v);
      return `${k}=${/^[^\s"]*$/.test(text) && text !== '' ? text : JSON.stringify(text)}`;
    }).join(' ');
  }

  const DURATION_RE = /^\d+(\.\d+)?(us|µs|ms|s|m|h)$/;

  // Every lookback Jaeger's UI writes into its URLs, plus a few shorter ones.
  const LOOKBACKS = [
    ['5m', 'Last 5 minutes'], ['15m', 'Last 15 minutes'], ['30m', 'Last 30 minutes'],
    ['1h', 'Last hour'], ['2h', 'Last 2 hours'], ['3h', 'Last 3 hours'], ['6h', 'Last 6 hours'],
    ['12h', 'Last 12 hours'], ['24h', 'Last 24 hours'], ['2d', 'Last 2 days'], ['3d', 'Last 3 days'],
    ['5d', 'Last 5 days'], ['7d', 'Last 7 days'], ['2w', 'Last 2 weeks'], ['custom', 'Custom time range'],
  ];
  const LOOKBACK_RE = /^(\d+(?:\.\d+)?)(m|h|d|w)$/;

  function lookbackMs(lb) {
    const m = LOOKBACK_RE.exec(lb || '');
    if (!m) return 3600e3;
    return Number(m[1]) * { m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 }[m[2]];
  }

  function lookbackLabel(lb) {
    const known = LOOKBACKS.find(([v]) => v === lb);
    if (known) return known[1];
    const m = LOOKBACK_RE.exec(lb);
    if (!m) return lb;
    const unit = { m: 'minute', h: 'hour', d: 'day', w: 'week' }[m[2]];
    return `Last ${m[1]} ${Number(m[1]) === 1 ? unit : `${unit}s`}`;
  }

  /** Select `value` in a lookback <select>, adding an option for values outside the list (e.g. 48h). */
  function selectLookback(sel, value) {
    if (![...sel.options].some((o) => o.value === value)) {
      if (value !== 'custom' && !LOOKBACK_RE.test(value)) return false;
      const opt = h('option', { value }, lookbackLabel(value));
      const after = [...sel.options].find((o) => o.value !== 'custom' && LOOKBACK_RE.test(o.value) && lookbackMs(o.value) > lookbackMs(value));
      sel.insertBefore(opt, after || sel.querySelector('option[value="custom"]'));
    }
    sel.value = value;
    return true;
  }

  /** µs since the epoch <-> the value of an <input type="datetime-local"> (local time). */
  function toLocalInput(us) {
    const d = new Date(us / 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fromLocalInput(text) {
    const ms = new Date(text).getTime();
    return Number.isFinite(ms) ? ms * 1000 : null;
  }

  // ------------------------------------------------------------------ search view

  const searchState = {
    el: null,
    servicesLoaded: false,
    lastQuery: null,
    traces: [],
    sort: 'recent',
    compare: [],
    uploadedLabel: null,
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
    const startIn = h('input', { id: 'custom-start', name: 'start', type: 'datetime-local', step: '1' });
    const endIn = h('input', { id: 'custom-end', name: 'end', type: 'datetime-local', step: '1' });
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
      h('div', { class: 'field-row custom-range', id: 'custom-range', hidden: true },
        field('Start', startIn),
        field('End', endIn)),
      h('div', { class: 'field-row' },
        field('Min Duration', minIn),
        field('Max Duration', maxIn)),
      field('Limit Results', limitIn),
      formError,
      submit);

    const fileIn = h('input', { id: 'upload-input', type: 'file', accept: '.json,.jsonl,application/json', class: 'visually-hidden' });
    fileIn.addEventListener('change', () => { if (fileIn.files[0]) uploadFile(fileIn.files[0]); fileIn.value = ''; });
    const upload = h('div', { class: 'upload-box' },
      h('label', { class: 'btn btn-ghost upload-btn', for: 'upload-input', title: 'View a Jaeger JSON or OTLP JSON file without storing it' },
        'Open JSON file…', fileIn),
      h('span', { class: 'field-hint' }, 'Jaeger JSON or OTLP JSON; viewed here, not stored.'));
    const results = h('section', { class: 'results', id: 'results', 'aria-live': 'polite' });
    const el = h('div', { class: 'search-layout', id: 'search-view' },
      h('aside', { class: 'panel search-panel' }, h('h2', { class: 'panel-title' }, 'Search'), form, upload),
      results);
    lookSel.addEventListener('change', () => {
      const custom = lookSel.value === 'custom';
      el.querySelector('#custom-range').hidden = !custom;
      if (custom && !startIn.value) {
        const now = Date.now() * 1000;
        startIn.value = toLocalInput(now - 3600e6);
        endIn.value = toLocalInput(now);
      }
    });

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
      start: f.querySelector('#custom-start'),
      end: f.querySelector('#custom-end'),
      customRange: f.querySelector('#custom-range'),
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
    if (f.lookback.value === 'custom') {
      const start = fromLocalInput(f.start.value);
      const end = fromLocalInput(f.end.value);
      if (start == null || end == null || end <= start) { showFormError('Custom range: pick a start before the end.'); return null; }
      urlParams.start = String(start);
      urlParams.end = String(end);
    }
    if (f.operation.value) urlParams.operation = f.operation.value;
    // Written the way Jaeger's UI writes it, so the URL opens the same search there.
    if (Object.keys(tags).length) urlParams.tags = JSON.stringify(tags);
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
    if (urlParams.lookback === 'custom') {
      p.start = urlParams.start;
      p.end = urlParams.end;
      delete p.lookback;
    }
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
    searchState.uploadedLabel = null;
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
    searchState.compare = searchState.compare.filter((id) => traces.some((t) => t.traceID === id));
    const compareBtn = h('button', {
      type: 'button', class: 'btn btn-ghost', id: 'compare-button',
      title: 'Tick two traces to compare them',
      onclick: () => {
        const [a, b] = searchState.compare;
        if (a && b) navigate(`/trace/${a}...${b}?cohort=${a}&cohort=${b}`);
      },
    });
    const updateCompare = () => {
      compareBtn.textContent = `Compare (${searchState.compare.length}/2)`;
      compareBtn.disabled = searchState.compare.length !== 2;
    };
    updateCompare();
    searchState.onCompareChange = updateCompare;
    results.append(
      h('div', { class: 'panel results-panel' },
        h('div', { class: 'results-header' },
          h('h2', { class: 'panel-title', id: 'results-count' }, plural(traces.length, 'Trace'),
            searchState.uploadedLabel ? h('span', { class: 'muted upload-label' }, ` from ${searchState.uploadedLabel} (not stored)`) : null),
          h('div', { class: 'results-actions' }, compareBtn, h('label', { class: 'sort-label' }, 'Sort ', sortSel))),
        scatterPlot(traces)),
      h('ol', { class: 'trace-list', id: 'trace-list' }, sorted.map((t) => traceListItem(t, maxDur))));
  }

  function traceListItem(t, maxDur) {
    const root = t.root;
    const title = root
      ? [h('span', { class: 'ti-service' }, root.service), ': ', h('span', { class: 'ti-op' }, root.operationName)]
      : [h('span', { class: 'ti-op' }, '<trace without spans>')];
    const pct = Math.max(0.5, (t.duration / maxDur) * 100);
    const tick = h('input', { type: 'checkbox', class: 'compare-tick', checked: searchState.compare.includes(t.traceID), 'aria-label': 'Select for comparison' });
    tick.addEventListener('change', () => {
      const list = searchState.compare.filter((id) => id !== t.traceID);
      if (tick.checked) list.push(t.traceID);
      searchState.compare = list.slice(-2);
      for (const box of document.querySelectorAll('#trace-list .trace-item')) {
        box.querySelector('.compare-tick').checked = searchState.compare.includes(box.dataset.traceId);
      }
      if (searchState.onCompareChange) searchState.onCompareChange();
    });
    return h('li', { class: `trace-item${t.errorCount ? ' has-errors' : ''}`, dataset: { traceId: t.traceID } },
      h('label', { class: 'compare-label', title: 'Compare' }, tick),
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
    const ids = params.getAll('traceID').map((x) => x.trim().toLowerCase()).filter(Boolean);
    if (ids.length) { runIdSearch(ids); return; }
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
    const tagParam = params.get('tags') || '';
    let tagObj = null;
    try { tagObj = parseTags(tagParam); } catch (_e) { tagObj = null; }
    f.tags.value = tagObj && tagParam.trim().startsWith('{') ? tagsText(tagObj) : tagParam;
    let lookback = params.get('lookback') || '';
    const startUs = Number(params.get('start'));
    const endUs = Number(params.get('end'));
    if (!lookback && params.get('start') && params.get('end')) lookback = 'custom';
    if (!selectLookback(f.lookback, lookback || '1h')) {
      showFormError(`Unknown lookback "${lookback}"; searching the last hour.`);
      f.lookback.value = '1h';
    }
    f.customRange.hidden = f.lookback.value !== 'custom';
    if (f.lookback.value === 'custom') {
      const now = Date.now() * 1000;
      f.start.value = toLocalInput(Number.isFinite(startUs) && startUs > 0 ? startUs : now - 3600e6);
      f.end.value = toLocalInput(Number.isFinite(endUs) && endUs > 0 ? endUs : now);
    }
    f.minDuration.value = params.get('minDuration') || '';
    f.maxDuration.value = params.get('maxDuration') || '';
    f.limit.value = params.get('limit') || '20';
    if (key === searchState.lastQuery && searchState.traces.length) return; // cached results
    const q = readForm();
    if (!q) return;
    if (q.urlParams.lookback === 'custom' && startUs > 0 && endUs > startUs &&
        toLocalInput(startUs) === f.start.value && toLocalInput(endUs) === f.end.value) {
      q.urlParams.start = String(startUs);
      q.urlParams.end = String(endUs);
    }
    runSearch(q);
  }

  async function runIdSearch(ids) {
    const key = `traceID=${ids.join(',')}`;
    searchState.lastQuery = key;
    searchState.uploadedLabel = null;
    renderResultsMessage('loading', 'Loading traces…', null);
    const qs = new URLSearchParams(ids.map((id) => ['traceID', id]));
    try {
      const found = [];
      const fromServer = ids.filter((id) => !uploaded.has(id));
      if (fromServer.length) {
        const body = await api(`/api/traces?${qs.toString()}`);
        found.push(...(Array.isArray(body.data) ? body.data : []));
      }
      for (const id of ids) if (uploaded.has(id)) found.push(uploaded.get(id));
      if (searchState.lastQuery !== key) return;
      searchState.traces = found.map(buildTrace);
      renderResults();
    } catch (e) {
      if (searchState.lastQuery !== key) return;
      searchState.lastQuery = null;
      renderResultsMessage('error', 'Search failed', e.message);
    }
  }

  // ------------------------------------------------------------------ upload (Jaeger JSON or OTLP JSON)

  function otlpValue(v) {
    if (!v || typeof v !== 'object') return [v, 'string'];
    if ('stringValue' in v) return [String(v.stringValue), 'string'];
    if ('boolValue' in v) return [Boolean(v.boolValue), 'bool'];
    if ('intValue' in v) return [Number(v.intValue), 'int64'];
    if ('doubleValue' in v) return [Number(v.doubleValue), 'float64'];
    if ('bytesValue' in v) return [String(v.bytesValue), 'binary'];
    if ('arrayValue' in v) return [JSON.stringify((v.arrayValue.values || []).map((x) => otlpValue(x)[0])), 'string'];
    if ('kvlistValue' in v) {
      return [JSON.stringify(Object.fromEntries((v.kvlistValue.values || []).map((x) => [x.key, otlpValue(x.value)[0]]))), 'string'];
    }
    return ['', 'string'];
  }

  const otlpTags = (attrs) => (Array.isArray(attrs) ? attrs : []).map((a) => {
    const [value, type] = otlpValue(a.value);
    return { key: String(a.key), type, value };
  });

  const OTLP_KINDS = ['', 'internal', 'server', 'client', 'producer', 'consumer'];

  function otlpId(id) {
    if (!id) return '';
    const text = String(id);
    if (/^[0-9a-fA-F]+$/.test(text)) return text.toLowerCase();
    try { // proto3 JSON mapping writes bytes as base64
      return [...atob(text)].map((c) => c.charCodeAt(0).toString(16).padStart(2, '0')).join('');
    } catch (_e) { return text; }
  }

  /** OTLP/JSON (ExportTraceServiceRequest) to Jaeger JSON traces. */
  function otlpToJaeger(doc) {
    const traces = new Map();
    let pid = 0;
    for (const rs of doc.resourceSpans || []) {
      const resTags = otlpTags(rs.resource && rs.resource.attributes);
      const svc = resTags.find((t) => t.key === 'service.name');
      const processID = `p${++pid}`;
      const proc = { serviceName: svc ? String(svc.value) : 'unknown_service', tags: resTags.filter((t) => t.key !== 'service.name') };
      for (const ss of rs.scopeSpans || rs.instrumentationLibrarySpans || []) {
        for (const sp of ss.spans || []) {
          const traceID = otlpId(sp.traceId);
          const startNs = BigInt(sp.startTimeUnixNano || 0);
          const endNs = BigInt(sp.endTimeUnixNano || sp.startTimeUnixNano || 0);
          const tags = otlpTags(sp.attributes);
          const kind = typeof sp.kind === 'string' ? sp.kind.replace('SPAN_KIND_', '').toLowerCase() : OTLP_KINDS[sp.kind || 0];
          if (kind && kind !== 'unspecified') tags.push({ key: 'span.kind', type: 'string', value: kind });
          const code = sp.status && sp.status.code;
          if (code === 2 || code === 'STATUS_CODE_ERROR') {
            tags.push({ key: 'otel.status_code', type: 'string', value: 'ERROR' }, { key: 'error', type: 'bool', value: true });
            if (sp.status.message) tags.push({ key: 'otel.status_description', type: 'string', value: String(sp.status.message) });
          }
          const refs = [];
          if (sp.parentSpanId) refs.push({ refType: 'CHILD_OF', traceID, spanID: otlpId(sp.parentSpanId) });
          for (const l of sp.links || []) refs.push({ refType: 'FOLLOWS_FROM', traceID: otlpId(l.traceId), spanID: otlpId(l.spanId) });
          const logs = (sp.events || []).map((ev) => ({
            timestamp: Number(BigInt(ev.timeUnixNano || 0) / 1000n),
            fields: [{ key: 'event', type: 'string', value: String(ev.name || '') }, ...otlpTags(ev.attributes)],
          }));
          if (!traces.has(traceID)) traces.set(traceID, { traceID, spans: [], processes: {}, warnings: null });
          const t = traces.get(traceID);
          t.processes[processID] = proc;
          t.spans.push({
            traceID, spanID: otlpId(sp.spanId), operationName: String(sp.name || ''), references: refs,
            startTime: Number(startNs / 1000n), duration: Number((endNs - startNs) / 1000n),
            tags, logs, processID, warnings: null,
          });
        }
      }
    }
    return [...traces.values()];
  }

  /** Jaeger traces in an uploaded document: {data: [...]}, one trace, a list, or OTLP JSON. */
  function tracesFromDocument(doc) {
    if (doc && Array.isArray(doc.resourceSpans)) return otlpToJaeger(doc);
    if (doc && Array.isArray(doc.data)) return doc.data;
    if (Array.isArray(doc) && doc.length && doc.every((d) => d && Array.isArray(d.resourceSpans))) {
      return otlpToJaeger({ resourceSpans: doc.flatMap((d) => d.resourceSpans) }); // spans of one trace may span lines
    }
    if (Array.isArray(doc)) return doc.flatMap((d) => tracesFromDocument(d));
    if (doc && Array.isArray(doc.spans)) return [doc];
    throw new Error('not Jaeger JSON ({"data": [traces]}) nor OTLP JSON ({"resourceSpans": [...]})');
  }

  async function uploadFile(file) {
    let traces;
    try {
      const text = await file.text();
      let doc;
      try {
        doc = JSON.parse(text);
      } catch (e) { // OTLP JSON lines (the OpenTelemetry file exporter): one request per line
        const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
        if (lines.length < 2) throw e;
        doc = lines.map((l) => JSON.parse(l));
      }
      traces = tracesFromDocument(doc);
    } catch (e) {
      renderResultsMessage('error', `Cannot read ${file.name}`, e.message);
      return [];
    }
    traces = traces.filter((t) => t && Array.isArray(t.spans) && t.spans.length);
    for (const t of traces) {
      t.traceID = String(t.traceID || t.spans[0].traceID).toLowerCase();
      uploaded.set(t.traceID, t);
    }
    searchState.traces = traces.map(buildTrace);
    searchState.lastQuery = `upload:${file.name}`;
    searchState.uploadedLabel = file.name;
    renderResults();
    return traces.map((t) => t.traceID);
  }

  // ------------------------------------------------------------------ trace view

  // The waterfall is virtualised: the layout (offsets, colours, search text, subtree
  // sizes, critical path) is computed once per trace; only the rows in view (plus an
  // overscan) exist in the DOM, cached per span and rebuilt only when their state changes.
  const ROW_H = 28;
  const OVERSCAN = 15;
  const DETAIL_H_GUESS = 320;
  const traceState = {
    trace: null, collapsed: new Set(), selected: null, filter: '', matches: null,
    items: [], offsets: new Float64Array(1), detailH: new Map(), rowCache: new Map(),
    mounted: [], zoom: [0, 1], showCritical: true, tab: 'timeline', raf: 0,
  };
  /** Traces read from an uploaded file: viewed from memory, never stored. */
  const uploaded = new Map();

  async function loadRawTrace(traceID) {
    const id = String(traceID).toLowerCase();
    if (uploaded.has(id)) return uploaded.get(id);
    try {
      const body = await api(`/api/traces/${encodeURIComponent(traceID)}`);
      return Array.isArray(body.data) ? body.data[0] : null;
    } catch (e) {
      if (e.status === 404) return null;
      throw e;
    }
  }

  async function showTrace(traceID, params) {
    const el = h('div', { class: 'trace-view', id: 'trace-view' },
      h('div', { class: 'empty-state empty-loading' }, emptyIcon('loading'), h('h3', null, 'Loading trace…')));
    mount(el, 'trace');
    document.title = `Trace ${shortId(traceID)} · aiecs-tracing`;
    let raw;
    try {
      raw = await loadRawTrace(traceID);
    } catch (e) {
      if (!el.isConnected) return;
      clear(el).append(h('div', { class: 'empty-state empty-error' }, emptyIcon('error'),
        h('h3', null, 'Could not load trace'), h('p', { class: 'mono' }, traceID), h('p', null, e.message),
        backButton()));
      return;
    }
    if (!el.isConnected) return; // user navigated away meanwhile
    if (!raw || !Array.isArray(raw.spans) || !raw.spans.length) {
      clear(el).append(h('div', { class: 'empty-state empty-empty' }, emptyIcon('empty'),
        h('h3', null, 'Trace not found'), h('p', { class: 'mono' }, traceID),
        h('p', null, 'It may have expired or not been received yet.'), backButton()));
      return;
    }
    const trace = buildTrace(raw);
    prepareLayout(trace);
    Object.assign(traceState, {
      trace, collapsed: new Set(), selected: null, filter: '', matches: null, detailH: new Map(),
      rowCache: new Map(), mounted: [], zoom: [0, 1], tab: 'timeline',
    });
    if (trace.root) document.title = `${trace.root.service}: ${trace.root.operationName} · aiecs-tracing`;
    clear(el).append(traceHeader(trace), h('div', { id: 'trace-body', class: 'trace-body' }));
    showTab('timeline');
    const uiFind = (params && params.get('uiFind')) || '';
    const wanted = params && params.get('span');
    if (uiFind) {
      document.getElementById('span-filter').value = uiFind;
      applyFilter(uiFind, !wanted);
    }
    if (wanted && trace.byId.has(wanted)) selectSpan(wanted, true);
  }

  /** Derived per-span data, computed once per trace. */
  function prepareLayout(t) {
    const spans = t.spans;
    const total = Math.max(1, t.duration);
    for (let i = 0; i < spans.length; i++) {
      const sp = spans[i];
      sp.index = i;
      sp.colour = colourFor(sp.service);
      sp.relStart = (sp.startTime - t.start) / total;
      sp.relDur = sp.duration / total;
      sp.descendants = 0;
      sp.errorsBelow = 0;
      const p = sp.parent;
      // A child outside its parent's time range: clock skew between hosts, or a child that
      // outlives its parent. Asynchronous children (a consumer of a producer's message, a
      // FOLLOWS_FROM reference) normally outlive the parent: only their early start counts.
      const async = Boolean(p) && (tagValue(sp.tags, 'span.kind') === 'consumer' ||
        tagValue(p.tags, 'span.kind') === 'producer' ||
        sp.references.some((r) => r && String(r.spanID) === p.spanID && r.refType === 'FOLLOWS_FROM'));
      sp.skew = Boolean(p) && (sp.startTime < p.startTime ||
        (!async && sp.startTime + sp.duration > p.startTime + p.duration));
      const words = [sp.operationName, sp.service, sp.spanID];
      for (const tg of sp.tags) words.push(`${tg.key}=${fmtValue(tg.value)}`);
      for (const tg of sp.process.tags || []) words.push(`${tg.key}=${fmtValue(tg.value)}`);
      for (const lg of sp.logs) for (const f of lg.fields || []) words.push(`${f.key}=${fmtValue(f.value)}`);
      sp.search = words.join('\n').toLowerCase();
    }
    // Depth-first order: a subtree is the span plus the next `descendants` spans.
    for (let i = spans.length - 1; i >= 0; i--) {
      const sp = spans[i];
      if (sp.parent) {
        sp.parent.descendants += sp.descendants + 1;
        sp.parent.errorsBelow += sp.errorsBelow + (sp.isError ? 1 : 0);
      }
    }
    t.critical = criticalPath(t);
    t.skewCount = spans.filter((sp) => sp.skew).length;
  }

  /**
   * Jaeger's critical path: from the root's end, walk back through the last-finishing
   * child (children clipped to their parent, FOLLOWS_FROM children left out), then
   * through the child that finished last before that one started, and so on.
   * Returns Map spanID -> [[startUs, endUs], ...].
   */
  function criticalPath(t) {
    const segs = new Map();
    const root = t.root;
    if (!root) return segs;
    const bounds = new Map([[root, [root.startTime, root.startTime + root.duration]]]);
    const kids = new Map();
    const stack = [root];
    while (stack.length) {
      const p = stack.pop();
      const [ps, pe] = bounds.get(p);
      const list = [];
      for (const c of p.children) {
        const ref = c.references.find((r) => r && String(r.spanID) === p.spanID);
        if (ref && ref.refType === 'FOLLOWS_FROM') continue;
        const cs = Math.max(ps, c.startTime);
        const ce = Math.min(pe, c.startTime + c.duration);
        if (c.startTime > pe || c.startTime + c.duration < ps) continue;
        bounds.set(c, [cs, ce]);
        list.push(c);
        stack.push(c);
      }
      list.sort((a, b) => bounds.get(b)[1] - bounds.get(a)[1]);
      kids.set(p, list);
    }
    const add = (sp, a, b) => {
      if (b <= a) return;
      if (!segs.has(sp.spanID)) segs.set(sp.spanID, []);
      segs.get(sp.spanID).push([a, b]);
    };
    const next = new Map(); // per span: index of the next child to consider (cursor only decreases)
    let cur = root;
    let cursor = null;
    for (let guard = 0; cur && guard < 4 * t.spans.length + 8; guard++) {
      const [cs, ce] = bounds.get(cur);
      const end = cursor == null ? ce : cursor;
      const list = kids.get(cur) || [];
      let i = next.get(cur) || 0;
      while (i < list.length && cursor != null && bounds.get(list[i])[1] >= cursor) i++;
      const child = i < list.length ? list[i] : null;
      next.set(cur, i + 1);
      if (child) {
        add(cur, bounds.get(child)[1], end);
        cur = child;
        cursor = null;
      } else {
        add(cur, cs, end);
        if (cur === root || !cur.parent || !bounds.has(cur.parent)) break;
        cursor = cs;
        cur = cur.parent;
      }
    }
    return segs;
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

  function downloadJSON(name, doc) {
    const blob = new Blob([JSON.stringify(doc, null, 2)], { type: 'application/json' });
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function replaceParams(changes) {
    const u = new URL(location.href);
    for (const [k, v] of Object.entries(changes)) {
      if (v == null || v === '') u.searchParams.delete(k); else u.searchParams.set(k, v);
    }
    const next = u.pathname + (u.search ? u.search : '') + u.hash;
    if (next !== location.pathname + location.search + location.hash) history.replaceState(history.state, '', next);
  }

  function traceHeader(t) {
    const stat = (label, value, cls) => h('div', { class: `stat ${cls || ''}` },
      h('dt', null, label), h('dd', null, value));
    const filterIn = h('input', {
      id: 'span-filter', type: 'search', class: 'span-filter', placeholder: 'Find in trace…',
      spellcheck: 'false', 'aria-label': 'Find spans in trace',
    });
    filterIn.addEventListener('input', () => applyFilter(filterIn.value, true));
    filterIn.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && traceState.matches && traceState.matches.size) {
        e.preventDefault();
        const ids = t.spans.filter((sp) => traceState.matches.has(sp.spanID)).map((sp) => sp.spanID);
        const at = ids.indexOf(traceState.selected);
        selectSpan(ids[(at + (e.shiftKey ? ids.length - 1 : 1)) % ids.length], true);
      }
    });
    const tab = (name, label) => h('button', {
      type: 'button', class: 'tab', id: `tab-${name}`, role: 'tab', dataset: { tab: name },
      onclick: () => showTab(name),
    }, label);
    const critical = h('input', { type: 'checkbox', id: 'critical-toggle', checked: traceState.showCritical });
    critical.addEventListener('change', () => { traceState.showCritical = critical.checked; invalidateRows(); });
    const cpTotal = [...t.critical.values()].flat().reduce((a, [x, y]) => a + (y - x), 0);
    return h('div', { class: 'panel trace-header', id: 'trace-header' },
      h('div', { class: 'trace-title-row' },
        backButton(),
        h('h1', { class: 'trace-title' },
          t.root ? [h('span', { class: 'tt-service', style: { color: colourFor(t.root.service) } }, t.root.service), ': ',
            h('span', { class: 'tt-op' }, t.root.operationName)] : 'Trace',
          h('span', { class: 'trace-id mono', id: 'trace-id', title: 'Trace ID' }, t.traceID)),
        h('a', {
          class: 'btn btn-ghost', href: `/compare?cohort=${encodeURIComponent(t.traceID)}`, 'data-nav': true,
          title: 'Compare this trace with another',
        }, 'Compare…'),
        h('button', {
          class: 'btn btn-ghost', type: 'button', id: 'download-json', title: 'Download the trace as Jaeger JSON',
          onclick: () => downloadJSON(`trace-${t.traceID}.json`, { data: [t.raw] }),
        }, 'Download JSON')),
      h('dl', { class: 'trace-stats', id: 'trace-stats' },
        stat('Trace Start', fmtTimestamp(t.start)),
        stat('Duration', fmtDuration(t.duration)),
        stat('Services', String(t.services.length)),
        stat('Depth', String(t.depth)),
        stat('Total Spans', String(t.spans.length)),
        stat('Errors', String(t.errorCount), t.errorCount ? 'stat-error' : ''),
        t.skewCount ? stat('Clock skew', String(t.skewCount), 'stat-warn') : null),
      h('div', { class: 'trace-toolbar' },
        h('div', { class: 'tabs', role: 'tablist' }, tab('timeline', 'Timeline'), tab('table', 'Span table')),
        h('div', { class: 'svc-legend', id: 'svc-legend' }, t.services.map((sv) => serviceChip(sv.name, sv.count))),
        h('div', { class: 'toolbar-actions' },
          h('label', { class: 'cp-toggle', title: `Critical path: ${fmtDuration(cpTotal)} of ${fmtDuration(t.duration)}` },
            critical, h('span', { class: 'cp-swatch' }), 'Critical path'),
          h('span', { class: 'filter-count muted', id: 'filter-count', 'aria-live': 'polite' }),
          filterIn,
          h('button', { class: 'btn btn-ghost', type: 'button', id: 'expand-all', onclick: () => { traceState.collapsed.clear(); relayout(); } }, 'Expand all'),
          h('button', {
            class: 'btn btn-ghost', type: 'button', id: 'collapse-all',
            onclick: () => { collapseBelowRoots(t); relayout(); },
          }, 'Collapse all'))),
      t.warnings.length ? h('ul', { class: 'warnings' }, t.warnings.map((w) => h('li', null, String(w)))) : null);
  }

  function showTab(name) {
    traceState.tab = name;
    const header = document.getElementById('trace-header');
    if (header) header.classList.toggle('on-table', name === 'table');
    for (const b of document.querySelectorAll('#trace-header .tab')) {
      b.classList.toggle('active', b.dataset.tab === name);
      b.setAttribute('aria-selected', String(b.dataset.tab === name));
    }
    const body = clear(document.getElementById('trace-body'));
    traceState.mounted = [];
    traceState.rowCache.clear();
    if (name === 'table') {
      body.append(spanTable(traceState.trace));
      return;
    }
    body.append(minimap(traceState.trace), waterfall(traceState.trace));
    relayout();
  }

  function collapseBelowRoots(t) {
    // "Collapse all" keeps roots open so their direct children stay visible.
    traceState.collapsed.clear();
    for (const sp of t.spans) if (sp.children.length && sp.depth >= 1) traceState.collapsed.add(sp.spanID);
    if (!traceState.collapsed.size) for (const r of t.roots) if (r.children.length) traceState.collapsed.add(r.spanID);
  }

  const TICKS = 5;

  function renderTicks() {
    const t = traceState.trace;
    const el = document.getElementById('wf-ticks');
    if (!el) return;
    const [z0, z1] = traceState.zoom;
    clear(el);
    for (let i = 0; i < TICKS; i++) {
      const frac = i / (TICKS - 1);
      el.append(h('span', {
        class: `tick${i === TICKS - 1 ? ' tick-last' : ''}`, style: { left: `${frac * 100}%` },
      }, fmtDuration(t.duration * (z0 + (z1 - z0) * frac))));
    }
  }

  function waterfall(t) {
    const rows = h('div', { class: 'wf-rows', id: 'wf-rows', role: 'tree', 'aria-label': 'Spans' });
    const scroller = h('div', { class: 'wf-scroll', id: 'wf-scroll' }, rows);
    scroller.addEventListener('scroll', scheduleRender, { passive: true });
    rows.addEventListener('click', onRowsClick);
    rows.addEventListener('keydown', onRowsKey);
    const el = h('div', { class: 'panel waterfall', id: 'waterfall' },
      h('div', { class: 'wf-header' },
        h('div', { class: 'wf-name-col' }, 'Service & Operation',
          h('button', {
            type: 'button', class: 'btn btn-ghost btn-small', id: 'zoom-reset', hidden: true,
            onclick: () => setZoom(0, 1),
          }, 'Reset zoom')),
        h('div', { class: 'wf-time-col' }, h('div', { class: 'wf-ticks', id: 'wf-ticks' }))),
      scroller);
    return el;
  }

  // ---------------------------------------------------------------- minimap and zoom

  function minimap(t) {
    const canvas = h('canvas', { class: 'mm-canvas', id: 'minimap-canvas', height: 60 });
    const sel = h('div', { class: 'mm-selection', id: 'minimap-selection', hidden: true });
    const shadeL = h('div', { class: 'mm-shade mm-shade-left' });
    const shadeR = h('div', { class: 'mm-shade mm-shade-right' });
    const wrap = h('div', {
      class: 'minimap', id: 'minimap', title: 'Drag across a time range to zoom the waterfall; double-click to reset',
    }, canvas, shadeL, shadeR, sel);
    const panel = h('div', { class: 'panel minimap-panel' }, wrap);
    const fracAt = (e) => {
      const r = wrap.getBoundingClientRect();
      return Math.min(1, Math.max(0, (e.clientX - r.left) / Math.max(1, r.width)));
    };
    let from = null;
    wrap.addEventListener('mousedown', (e) => {
      if (e.button !== 0) return;
      e.preventDefault();
      from = fracAt(e);
      const move = (ev) => {
        const to = fracAt(ev);
        sel.hidden = false;
        sel.style.left = `${Math.min(from, to) * 100}%`;
        sel.style.width = `${Math.abs(to - from) * 100}%`;
      };
      const up = (ev) => {
        window.removeEventListener('mousemove', move);
        window.removeEventListener('mouseup', up);
        sel.hidden = true;
        const to = fracAt(ev);
        if (Math.abs(to - from) > 0.004) setZoom(Math.min(from, to), Math.max(from, to));
        from = null;
      };
      window.addEventListener('mousemove', move);
      window.addEventListener('mouseup', up);
    });
    wrap.addEventListener('dblclick', () => setZoom(0, 1));
    requestAnimationFrame(() => drawMinimap(t));
    return panel;
  }

  function drawMinimap(t) {
    const canvas = document.getElementById('minimap-canvas');
    if (!canvas || traceState.trace !== t) return;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(100, canvas.clientWidth);
    const hgt = 60;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
    const ctx = canvas.getContext('2d');
    ctx.scale(dpr, dpr);
    ctx.clearRect(0, 0, w, hgt);
    const n = t.spans.length;
    const rowH = hgt / Math.max(1, n);
    const barH = Math.max(1, Math.min(6, rowH * 0.8));
    for (const sp of t.spans) {
      ctx.fillStyle = sp.isError ? '#d3343b' : sp.colour;
      ctx.fillRect(sp.relStart * w, sp.index * rowH, Math.max(1, sp.relDur * w), barH);
    }
    updateMinimapShade();
  }

  function updateMinimapShade() {
    const wrap = document.getElementById('minimap');
    if (!wrap) return;
    const [z0, z1] = traceState.zoom;
    wrap.querySelector('.mm-shade-left').style.width = `${z0 * 100}%`;
    wrap.querySelector('.mm-shade-right').style.width = `${(1 - z1) * 100}%`;
    wrap.classList.toggle('is-zoomed', z0 > 0 || z1 < 1);
  }

  function setZoom(z0, z1) {
    traceState.zoom = [z0, z1];
    const reset = document.getElementById('zoom-reset');
    if (reset) reset.hidden = z0 === 0 && z1 === 1;
    updateMinimapShade();
    renderTicks();
    invalidateRows();
  }

  // ---------------------------------------------------------------- find

  function applyFilter(text, reveal) {
    const t = traceState.trace;
    traceState.filter = text.trim().toLowerCase();
    const terms = traceState.filter.split(/\s+/).filter(Boolean);
    let matches = null;
    if (terms.length) {
      matches = new Set();
      for (const sp of t.spans) {
        const hay = sp.search;
        for (const term of terms) {
          if (hay.includes(term)) { matches.add(sp.spanID); break; }
        }
      }
    }
    traceState.matches = matches;
    // Reveal matches hidden inside collapsed subtrees.
    if (matches && traceState.collapsed.size) {
      for (const id of matches) {
        for (let p = t.byId.get(id).parent; p; p = p.parent) traceState.collapsed.delete(p.spanID);
      }
    }
    replaceParams({ uiFind: text.trim() });
    const filterIn = document.getElementById('span-filter');
    if (filterIn) filterIn.classList.toggle('no-match', Boolean(matches) && matches.size === 0);
    const counter = document.getElementById('filter-count');
    if (counter) counter.textContent = matches ? `${matches.size} of ${plural(t.spans.length, 'span')} match` : '';
    if (traceState.tab !== 'timeline') return;
    relayout();
    if (reveal && matches && matches.size) {
      const first = t.spans.find((sp) => matches.has(sp.spanID));
      scrollToSpan(first.spanID, true);
    }
  }

  // ---------------------------------------------------------------- layout and rendering

  /** Rebuild the visible row list and offsets (collapse, expand, select), then render. */
  function relayout() {
    const t = traceState.trace;
    if (!t || !document.getElementById('wf-rows')) return;
    const items = [];
    const spans = t.spans;
    const collapsed = traceState.collapsed;
    for (let i = 0; i < spans.length;) {
      const sp = spans[i];
      items.push(sp);
      if (traceState.selected === sp.spanID) items.push({ detailOf: sp });
      i += collapsed.size && collapsed.has(sp.spanID) ? sp.descendants + 1 : 1;
    }
    const offsets = new Float64Array(items.length + 1);
    for (let i = 0; i < items.length; i++) {
      const it = items[i];
      offsets[i + 1] = offsets[i] + (it.detailOf ? (traceState.detailH.get(it.detailOf.spanID) || DETAIL_H_GUESS) : ROW_H);
    }
    traceState.items = items;
    traceState.offsets = offsets;
    document.getElementById('wf-rows').style.height = `${offsets[items.length]}px`;
    renderTicks();
    renderWindow();
  }

  function invalidateRows() {
    traceState.rowCache.clear();
    renderWindow();
  }

  function scheduleRender() {
    if (traceState.raf) return;
    traceState.raf = requestAnimationFrame(() => { traceState.raf = 0; renderWindow(); });
  }

  function firstItemBelow(y) {
    const off = traceState.offsets;
    let lo = 0;
    let hi = traceState.items.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (off[mid] <= y) lo = mid; else hi = mid - 1;
    }
    return lo;
  }

  function rowKey(sp) {
    const m = traceState.matches;
    return `${traceState.selected === sp.spanID ? 1 : 0}${m ? (m.has(sp.spanID) ? 'm' : 'd') : '-'}` +
      `${traceState.collapsed.has(sp.spanID) ? 'c' : 'o'}`;
  }

  function renderWindow() {
    const rows = document.getElementById('wf-rows');
    const vp = document.getElementById('wf-scroll');
    const items = traceState.items;
    if (!rows || !vp) return;
    if (!items.length) { rows.replaceChildren(); return; }
    const top = vp.scrollTop;
    const a = Math.max(0, firstItemBelow(top) - OVERSCAN);
    const b = Math.min(items.length - 1, firstItemBelow(top + Math.max(vp.clientHeight, 400)) + OVERSCAN);
    const cache = traceState.rowCache;
    if (cache.size > 3000) cache.clear();
    const els = [];
    let detailEl = null;
    for (let i = a; i <= b; i++) {
      const it = items[i];
      let el;
      if (it.detailOf) {
        const key = `d:${it.detailOf.spanID}`;
        const hit = cache.get(key);
        el = hit ? hit.el : spanDetail(it.detailOf, traceState.trace);
        if (!hit) cache.set(key, { key, el });
        detailEl = el;
      } else {
        const key = rowKey(it);
        const hit = cache.get(it.spanID);
        if (hit && hit.key === key) el = hit.el;
        else {
          el = spanRow(it);
          cache.set(it.spanID, { key, el });
        }
      }
      el.style.top = `${traceState.offsets[i]}px`;
      els.push(el);
    }
    const current = rows.children;
    let same = current.length === els.length;
    for (let i = 0; same && i < els.length; i++) same = current[i] === els[i];
    if (!same) {
      const focused = document.activeElement;
      rows.replaceChildren(...els);
      if (focused && focused !== document.activeElement && focused.isConnected) focused.focus({ preventScroll: true });
    }
    traceState.mounted = els;
    if (detailEl) {
      const id = detailEl.dataset.spanId;
      const measured = Math.ceil(detailEl.getBoundingClientRect().height);
      if (measured && Math.abs(measured - (traceState.detailH.get(id) || DETAIL_H_GUESS)) > 1) {
        traceState.detailH.set(id, measured);
        relayout();
      }
    }
  }

  function pctInZoom(rel) {
    const [z0, z1] = traceState.zoom;
    return ((rel - z0) / (z1 - z0)) * 100;
  }

  function spanRow(sp) {
    const t = traceState.trace;
    const collapsed = traceState.collapsed.has(sp.spanID);
    const m = traceState.matches;
    const match = Boolean(m) && m.has(sp.spanID);
    const selected = traceState.selected === sp.spanID;
    const left = pctInZoom(sp.relStart);
    const width = (sp.relDur / (traceState.zoom[1] - traceState.zoom[0])) * 100;
    const colour = sp.colour;
    const toggle = sp.children.length
      ? h('button', {
        class: 'toggle', type: 'button', 'aria-expanded': String(!collapsed), tabindex: -1,
        title: collapsed ? `Expand (${sp.descendants} hidden)` : 'Collapse',
      }, s('svg', { viewBox: '0 0 10 10', width: 10, height: 10, 'aria-hidden': 'true' },
        s('path', { d: collapsed ? 'M3 1.5 L7 5 L3 8.5' : 'M1.5 3 L5 7 L8.5 3' })))
      : h('span', { class: 'toggle-spacer' });
    // Duration label after the bar; before it when the bar reaches the right edge; inside
    // it when the bar spans (nearly) the whole row.
    const labelRight = left + width > 75;
    const labelInside = labelRight && left < 12;
    const timeline = h('div', { class: 'span-timeline' },
      h('div', { class: 'tl-grid', 'aria-hidden': 'true' }),
      h('div', {
        class: 'span-bar',
        style: { left: `${left}%`, width: `max(2px, ${width}%)`, background: sp.isError ? null : colour },
      }),
      h('span', {
        class: `span-bar-label${labelInside ? ' label-inside' : labelRight ? ' label-left' : ''}`,
        style: labelInside ? { right: `calc(${Math.max(0, 100 - left - width)}% + 6px)` }
          : labelRight ? { right: `${Math.max(0, 100 - left)}%` } : { left: `calc(${Math.max(0, left + width)}% + 6px)` },
      }, fmtDuration(sp.duration)));
    const segs = traceState.showCritical ? t.critical.get(sp.spanID) : null;
    if (segs) {
      for (const [x, y] of segs) {
        const l = pctInZoom((x - t.start) / Math.max(1, t.duration));
        const w = pctInZoom((y - t.start) / Math.max(1, t.duration)) - l;
        timeline.append(h('div', { class: 'cp-seg', style: { left: `${l}%`, width: `max(2px, ${w}%)` } }));
      }
    }
    const hiddenErrors = collapsed && sp.errorsBelow;
    const row = h('div', {
      class: `span-row${sp.isError ? ' is-error' : ''}${selected ? ' is-selected' : ''}${match ? ' is-match' : ''}` +
        `${m && !match ? ' is-dimmed' : ''}${segs ? ' on-critical-path' : ''}`,
      role: 'treeitem', tabindex: 0, 'aria-level': sp.depth + 1, 'aria-selected': String(selected),
      'aria-expanded': sp.children.length ? String(!collapsed) : null,
      dataset: { spanId: sp.spanID, depth: String(sp.depth) },
      title: `${sp.service}: ${sp.operationName}`,
    },
    h('div', { class: 'span-name', style: { paddingLeft: `${8 + sp.depth * 16}px`, borderLeftColor: colour } },
      indentGuides(sp.depth),
      toggle,
      h('span', { class: 'span-service', style: { color: colour } }, sp.service),
      h('span', { class: 'span-op' }, sp.operationName),
      sp.isError ? h('span', { class: 'err-icon', title: 'Error', 'aria-label': 'error' }, '!') : null,
      sp.skew ? h('span', {
        class: 'skew-mark', title: 'Clock skew: this span is not within its parent\'s time range (it starts before, or outlives, its parent)',
        'aria-label': 'clock skew',
      }, 'skew') : null,
      collapsed ? h('span', { class: 'hidden-count' }, `+${sp.descendants}`) : null,
      hiddenErrors ? h('span', {
        class: 'hidden-errors', title: `${plural(sp.errorsBelow, 'error')} in the collapsed spans`,
      }, `! ${sp.errorsBelow}`) : null),
    timeline);
    return row;
  }

  function onRowsClick(e) {
    const row = e.target.closest('.span-row');
    if (!row) return;
    const id = row.dataset.spanId;
    if (e.target.closest('.toggle')) {
      e.stopPropagation();
      toggleCollapse(id);
      return;
    }
    selectSpan(traceState.selected === id ? null : id, false);
    const again = document.querySelector(`#wf-rows .span-row[data-span-id="${CSS.escape(id)}"]`);
    if (again) again.focus({ preventScroll: true });
  }

  function onRowsKey(e) {
    const row = e.target.closest('.span-row');
    if (!row || e.target !== row) return;
    const id = row.dataset.spanId;
    const sp = traceState.trace.byId.get(id);
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      selectSpan(traceState.selected === id ? null : id, false);
    } else if ((e.key === 'ArrowLeft' || e.key === 'ArrowRight') && sp.children.length) {
      e.preventDefault();
      if ((e.key === 'ArrowLeft') !== traceState.collapsed.has(id)) toggleCollapse(id);
    } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const rows = traceState.items.filter((it) => !it.detailOf);
      const at = rows.indexOf(sp) + (e.key === 'ArrowDown' ? 1 : -1);
      if (at >= 0 && at < rows.length) {
        scrollToSpan(rows[at].spanID, false);
        const el = document.querySelector(`#wf-rows .span-row[data-span-id="${CSS.escape(rows[at].spanID)}"]`);
        if (el) el.focus({ preventScroll: true });
      }
    }
  }

  function toggleCollapse(id) {
    if (traceState.collapsed.has(id)) traceState.collapsed.delete(id);
    else traceState.collapsed.add(id);
    relayout();
    const el = document.querySelector(`#wf-rows .span-row[data-span-id="${CSS.escape(id)}"]`);
    if (el) el.focus({ preventScroll: true });
  }

  function scrollToSpan(spanID, center) {
    const vp = document.getElementById('wf-scroll');
    const i = traceState.items.findIndex((it) => it.spanID === spanID && !it.detailOf);
    if (!vp || i < 0) return;
    const y = traceState.offsets[i];
    if (center) vp.scrollTop = Math.max(0, y - vp.clientHeight / 3);
    else if (y < vp.scrollTop) vp.scrollTop = y;
    else if (y + ROW_H > vp.scrollTop + vp.clientHeight) vp.scrollTop = y + ROW_H - vp.clientHeight;
    renderWindow();
  }

  function selectSpan(spanID, scroll) {
    const t = traceState.trace;
    if (spanID) {
      // Make sure every ancestor is expanded so the span is visible.
      for (let p = t.byId.get(spanID).parent; p; p = p.parent) traceState.collapsed.delete(p.spanID);
    }
    const before = traceState.selected;
    traceState.selected = spanID;
    if (before) traceState.rowCache.delete(before);
    if (spanID) traceState.rowCache.delete(spanID);
    replaceParams({ span: spanID || '' });
    if (traceState.tab !== 'timeline') showTab('timeline');
    relayout();
    if (spanID && scroll) scrollToSpan(spanID, true);
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

  function section(title, count, body, open, cls) {
    return h('details', { class: `sd-section ${cls || ''}`, open: Boolean(open) },
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
          onclick: (e) => { e.stopPropagation(); selectSpan(inTrace.spanID, true); },
        }, `${r.spanID} (${inTrace.service}: ${inTrace.operationName})`)
        : h('span', { class: 'mono' }, `${r.spanID}${r.traceID && r.traceID !== t.traceID ? ` in trace ${r.traceID}` : ' (not in trace)'}`);
      return [String(r.refType || 'CHILD_OF'), target];
    });
    const cp = (t.critical.get(sp.spanID) || []).reduce((a, [x, y]) => a + (y - x), 0);
    const warnings = [...sp.warnings];
    if (sp.skew && !warnings.some((w) => /skew/i.test(String(w)))) {
      warnings.push('This span is not within its parent\'s time range (clock skew, or a child that outlives its parent).');
    }
    return h('div', {
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
        cp ? h('div', { class: 'sd-critical' }, h('dt', null, 'Critical path'), h('dd', null, fmtDuration(cp))) : null,
        kind != null ? h('div', null, h('dt', null, 'Kind'), h('dd', null, fmtValue(kind))) : null,
        status != null || sp.isError ? h('div', { class: sp.isError ? 'is-error' : '' },
          h('dt', null, 'Status'), h('dd', null, status != null ? fmtValue(status) : 'ERROR',
            statusDesc != null ? ` – ${fmtValue(statusDesc)}` : '')) : null,
        h('div', null, h('dt', null, 'Span ID'), h('dd', { class: 'mono' }, sp.spanID)))),
    h('div', { class: 'sd-body' },
      warnings.length ? section('Warnings', warnings.length,
        h('ul', { class: 'warnings' }, warnings.map((w) => h('li', null, String(w)))), true, 'sd-warnings') : null,
      section('Tags', sp.tags.length, kvTable(tagRows(sp.tags), 'tags-table'), true),
      section(`Process: ${sp.service}`, (sp.process.tags || []).length,
        kvTable([['service.name', sp.service], ...tagRows(sp.process.tags || [])], 'process-table'), false),
      section('Logs', logs.length, logList, logs.length > 0),
      section('References', refs.length, kvTable(refs, 'refs-table'), false)));
  }

  // ---------------------------------------------------------------- span table (per-operation statistics)

  /** Self time: the span's duration not covered by any child (children clipped to the span). */
  function selfTime(sp) {
    const s0 = sp.startTime;
    const e0 = sp.startTime + sp.duration;
    const iv = sp.children.map((c) => [Math.max(s0, c.startTime), Math.min(e0, c.startTime + c.duration)])
      .filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
    let covered = 0;
    let curS = null;
    let curE = null;
    for (const [a, b] of iv) {
      if (curE == null || a > curE) {
        if (curE != null) covered += curE - curS;
        curS = a; curE = b;
      } else curE = Math.max(curE, b);
    }
    if (curE != null) covered += curE - curS;
    return Math.max(0, sp.duration - covered);
  }

  function operationStats(t) {
    const groups = new Map();
    for (const sp of t.spans) {
      const key = `${sp.service}\u0000${sp.operationName}`;
      let g = groups.get(key);
      if (!g) {
        g = { service: sp.service, operation: sp.operationName, count: 0, total: 0, self: 0, min: Infinity, max: 0, errors: 0 };
        groups.set(key, g);
      }
      g.count += 1;
      g.total += sp.duration;
      g.self += selfTime(sp);
      g.min = Math.min(g.min, sp.duration);
      g.max = Math.max(g.max, sp.duration);
      if (sp.isError) g.errors += 1;
    }
    for (const g of groups.values()) g.avg = g.total / g.count;
    return [...groups.values()];
  }

  const STAT_COLUMNS = [
    ['service', 'Service', false], ['operation', 'Operation', false], ['count', 'Count', true],
    ['errors', 'Errors', true], ['total', 'Total', true], ['self', 'Self time', true],
    ['selfPct', 'Self %', true], ['min', 'Min', true], ['avg', 'Avg', true], ['max', 'Max', true],
  ];
  const tableState = { sort: 'self', desc: true };

  function spanTable(t) {
    const stats = operationStats(t);
    for (const g of stats) g.selfPct = (100 * g.self) / Math.max(1, t.duration);
    const wrap = h('div', { class: 'panel span-table-panel', id: 'span-table-panel' });
    const render = () => {
      const { sort, desc } = tableState;
      const sorted = [...stats].sort((a, b) => {
        const x = a[sort]; const y = b[sort];
        const c = typeof x === 'string' ? x.localeCompare(y) : x - y;
        return desc ? -c : c;
      });
      const fmt = (key, g) => {
        if (key === 'operation') return g.operation;
        if (key === 'count' || key === 'errors') return String(g[key]);
        if (key === 'selfPct') return `${g.selfPct.toFixed(1)}%`;
        return fmtDuration(g[key]);
      };
      clear(wrap).append(
        h('p', { class: 'muted span-table-intro' },
          `${plural(stats.length, 'operation')} · self time is a span's duration not covered by its children. Click a row to find its spans.`),
        h('table', { class: 'data-table span-table', id: 'span-table' },
          h('thead', null, h('tr', null, STAT_COLUMNS.map(([key, label, num]) => h('th', {
            class: `${num ? 'num ' : ''}sortable${sort === key ? ` sorted ${desc ? 'desc' : 'asc'}` : ''}`,
            dataset: { key }, 'aria-sort': sort === key ? (desc ? 'descending' : 'ascending') : null,
            onclick: () => {
              if (tableState.sort === key) tableState.desc = !tableState.desc;
              else { tableState.sort = key; tableState.desc = num; }
              render();
            },
          }, label)))),
          h('tbody', null, sorted.map((g) => h('tr', {
            class: g.errors ? 'has-errors' : '', dataset: { service: g.service, operation: g.operation },
            onclick: () => {
              showTab('timeline');
              const f = document.getElementById('span-filter');
              f.value = g.operation;
              applyFilter(g.operation, true);
            },
          }, STAT_COLUMNS.map(([key, , num]) => h('td', { class: num ? 'num' : '', dataset: { col: key } },
            key === 'service' ? serviceChip(g.service) : fmt(key, g))))))));
    };
    render();
    return wrap;
  }

  // ---------------------------------------------------------------- trace comparison

  /** Spans grouped by their service+operation path from the root. */
  function pathGroups(t) {
    const keyOf = new Map();
    const groups = new Map();
    for (const sp of t.spans) { // depth-first: parents first
      const own = `${sp.service}\u0000${sp.operationName}`;
      const parentKey = sp.parent ? keyOf.get(sp.parent.spanID) : '';
      const key = `${parentKey}\u0001${own}`;
      keyOf.set(sp.spanID, key);
      let g = groups.get(key);
      if (!g) {
        g = { key, parentKey, service: sp.service, operation: sp.operationName, depth: sp.depth, count: 0, total: 0, errors: 0 };
        groups.set(key, g);
      }
      g.count += 1;
      g.total += sp.duration;
      if (sp.isError) g.errors += 1;
    }
    return groups;
  }

  function diffTraces(a, b) {
    const ga = pathGroups(a);
    const gb = pathGroups(b);
    const nodes = new Map();
    for (const [side, groups] of [['a', ga], ['b', gb]]) {
      for (const g of groups.values()) {
        let n = nodes.get(g.key);
        if (!n) {
          n = { key: g.key, parentKey: g.parentKey, service: g.service, operation: g.operation, depth: g.depth, a: null, b: null, children: [] };
          nodes.set(g.key, n);
        }
        n[side] = g;
      }
    }
    const roots = [];
    for (const n of nodes.values()) {
      const p = nodes.get(n.parentKey);
      if (p) p.children.push(n); else roots.push(n);
    }
    const ordered = [];
    const byName = (x, y) => x.service.localeCompare(y.service) || x.operation.localeCompare(y.operation);
    const walk = (n, depth) => {
      n.depth = depth;
      n.state = !n.a ? 'only-b' : !n.b ? 'only-a' : n.a.count !== n.b.count ? 'changed' : 'same';
      ordered.push(n);
      n.children.sort(byName).forEach((c) => walk(c, depth + 1));
    };
    roots.sort(byName).forEach((r) => walk(r, 0));
    return ordered;
  }

  async function showCompare(idA, idB) {
    const inA = h('input', { id: 'compare-a', type: 'text', class: 'mono', value: idA || '', placeholder: 'Trace ID A', spellcheck: 'false' });
    const inB = h('input', { id: 'compare-b', type: 'text', class: 'mono', value: idB || '', placeholder: 'Trace ID B', spellcheck: 'false' });
    const form = h('form', { class: 'compare-form', id: 'compare-form' },
      h('label', null, h('span', { class: 'cmp-badge cmp-a' }, 'A'), inA),
      h('label', null, h('span', { class: 'cmp-badge cmp-b' }, 'B'), inB),
      h('button', { class: 'btn btn-primary', type: 'submit' }, 'Compare'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const a = inA.value.trim().toLowerCase();
      const b = inB.value.trim().toLowerCase();
      if (a && b) navigate(`/trace/${a}...${b}?cohort=${a}&cohort=${b}`);
    });
    const body = h('div', { id: 'compare-body', class: 'compare-body' });
    const el = h('div', { class: 'compare-view', id: 'compare-view' },
      h('div', { class: 'panel' }, h('h1', { class: 'page-title' }, 'Compare traces'), form), body);
    mount(el, 'compare');
    document.title = 'Compare traces · aiecs-tracing';
    if (!idA || !idB) {
      body.append(h('div', { class: 'empty-state empty-intro' }, emptyIcon('intro'),
        h('h3', null, 'Pick two traces'),
        h('p', null, 'Enter two trace IDs, or tick two traces in the search results and press “Compare”.')));
      return;
    }
    body.append(h('div', { class: 'empty-state empty-loading' }, emptyIcon('loading'), h('h3', null, 'Loading traces…')));
    let raws;
    try {
      raws = await Promise.all([loadRawTrace(idA), loadRawTrace(idB)]);
    } catch (e) {
      clear(body).append(h('div', { class: 'empty-state empty-error' }, emptyIcon('error'), h('h3', null, 'Could not load traces'), h('p', null, e.message)));
      return;
    }
    if (!el.isConnected) return;
    const missing = [[idA, raws[0]], [idB, raws[1]]].filter(([, r]) => !r || !r.spans || !r.spans.length).map(([id]) => id);
    if (missing.length) {
      clear(body).append(h('div', { class: 'empty-state empty-empty' }, emptyIcon('empty'),
        h('h3', null, 'Trace not found'), h('p', { class: 'mono' }, missing.join(', '))));
      return;
    }
    const [ta, tb] = raws.map(buildTrace);
    const nodes = diffTraces(ta, tb);
    const counts = { 'only-a': 0, 'only-b': 0, changed: 0, same: 0 };
    for (const n of nodes) counts[n.state] += 1;
    const summary = (label, t, cls) => h('div', { class: `cmp-trace ${cls}` },
      h('span', { class: `cmp-badge ${cls}` }, label),
      h('a', { href: `/trace/${t.traceID}`, 'data-nav': true, class: 'mono' }, shortId(t.traceID)),
      t.root ? h('span', null, ` ${t.root.service}: ${t.root.operationName}`) : null,
      h('span', { class: 'muted' }, ` · ${fmtDuration(t.duration)} · ${plural(t.spans.length, 'span')}`),
      t.errorCount ? h('span', { class: 'badge badge-error' }, plural(t.errorCount, 'error')) : null);
    const pct = (x, y) => {
      if (!x) return '';
      const p = Math.round(((y - x) / x) * 100);
      return p ? `${p > 0 ? '+' : ''}${p}%` : '0%';
    };
    const avg = (g) => (g ? g.total / g.count : null);
    clear(body).append(
      h('div', { class: 'panel cmp-header' }, summary('A', ta, 'cmp-a'), summary('B', tb, 'cmp-b'),
        h('div', { class: 'cmp-legend' },
          h('span', { class: 'cmp-key only-a' }, `Only in A: ${counts['only-a']}`),
          h('span', { class: 'cmp-key only-b' }, `Only in B: ${counts['only-b']}`),
          h('span', { class: 'cmp-key changed' }, `Count changed: ${counts.changed}`),
          h('span', { class: 'cmp-key same' }, `Same: ${counts.same}`))),
      h('div', { class: 'panel' },
        h('table', { class: 'data-table cmp-table', id: 'compare-table' },
          h('thead', null, h('tr', null,
            h('th', null, 'Service & operation path'), h('th', { class: 'num' }, 'Spans A'), h('th', { class: 'num' }, 'Spans B'),
            h('th', { class: 'num' }, 'Δ count'), h('th', { class: 'num' }, 'Avg A'), h('th', { class: 'num' }, 'Avg B'),
            h('th', { class: 'num' }, 'Δ duration'))),
          h('tbody', null, nodes.map((n) => h('tr', {
            class: `cmp-row ${n.state}`, dataset: { state: n.state, service: n.service, operation: n.operation, depth: String(n.depth) },
          },
          h('td', { class: 'cmp-name', style: { paddingLeft: `${10 + n.depth * 16}px` } },
            h('span', { class: 'svc-dot', style: { background: colourFor(n.service) } }),
            h('span', { class: 'span-service', style: { color: colourFor(n.service) } }, n.service), ' ',
            h('span', { class: 'span-op' }, n.operation),
            (n.a && n.a.errors) || (n.b && n.b.errors) ? h('span', { class: 'err-icon', title: 'Errors' }, '!') : null),
          h('td', { class: 'num', dataset: { col: 'a' } }, n.a ? String(n.a.count) : '–'),
          h('td', { class: 'num', dataset: { col: 'b' } }, n.b ? String(n.b.count) : '–'),
          h('td', { class: 'num delta', dataset: { col: 'dcount' } }, (() => {
            const d = (n.b ? n.b.count : 0) - (n.a ? n.a.count : 0);
            return d ? `${d > 0 ? '+' : ''}${d}` : '0';
          })()),
          h('td', { class: 'num' }, n.a ? fmtDuration(avg(n.a)) : '–'),
          h('td', { class: 'num' }, n.b ? fmtDuration(avg(n.b)) : '–'),
          h('td', { class: 'num delta' }, n.a && n.b ? pct(avg(n.a), avg(n.b)) : '')))))));
  }

  // ------------------------------------------------------------------ dependencies view

  const depsState = { lookback: '24h' };

  async function showDependencies(params) {
    const wanted = params && params.get('lookback');
    if (wanted && (LOOKBACK_RE.test(wanted))) depsState.lookback = wanted;
    const lbSel = h('select', { id: 'deps-lookback', 'aria-label': 'Lookback' },
      LOOKBACKS.filter(([v]) => v !== 'custom').map(([v, label]) => h('option', { value: v, selected: v === depsState.lookback }, label)));
    const body = h('div', { class: 'deps-body', id: 'deps-body' });
    const el = h('div', { class: 'deps-view', id: 'deps-view' },
      h('div', { class: 'panel deps-header' },
        h('h1', { class: 'page-title' }, 'System architecture'),
        h('div', { class: 'deps-controls' },
          lbSel,
          h('button', { class: 'btn btn-ghost', type: 'button', onclick: () => loadDeps(body) }, 'Refresh'))),
      body);
    lbSel.addEventListener('change', () => {
      depsState.lookback = lbSel.value;
      replaceParams({ lookback: lbSel.value });
      loadDeps(body);
    });
    mount(el, 'dependencies');
    selectLookback(lbSel, depsState.lookback);
    replaceParams({ lookback: depsState.lookback });
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
    let yMin = Math.min(...nodes.map((x) => xy.get(x).y - 17));
    let yMax = Math.max(...nodes.map((x) => xy.get(x).y + 17));

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
          // One lane per edge on each side, so no two detours share a path.
          const laneKey = above ? 'above' : 'below';
          const lane = lanes.get(laneKey) || 0;
          lanes.set(laneKey, lane + 1);
          const target = above ? Math.min(...ys) - 33 - lane * 18 : Math.max(...ys) + 33 + lane * 18;
          const cy = (target - 0.25 * avg) / 0.75; // puts the curve's midpoint at `target`
          P = [[x1, a.y], [x1 + cx, cy], [x2 - cx, cy], [x2, b.y]];
        }
      } else { // back edge or same layer: arc below the nodes
        const lane = lanes.get('back') || 0;
        lanes.set('back', lane + 1);
        const x1 = a.x; const x2 = b.x; const y1 = a.y + 17; const y2 = b.y + 19;
        const dip = Math.max(a.y, b.y) + 44 + lane * 18 + Math.abs(x2 - x1) * 0.08;
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
      for (const tt of [...ts, 0.15, 0.85, 0.45, 0.55, 0.1, 0.9, 0.18, 0.82]) {
        const pt = bezier(P, tt);
        if (!overlaps(box(pt))) { at = pt; break; }
      }
      occupied.push(box(at));
      for (let k = 0; k <= 20; k++) {
        const y = bezier(P, k / 20)[1];
        yMin = Math.min(yMin, y);
        yMax = Math.max(yMax, y);
      }
      yMin = Math.min(yMin, at[1] - 11);
      yMax = Math.max(yMax, at[1] + 11);
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
    // Fit the drawing: detours above and arcs below may reach beyond the node rows.
    const top = Math.min(0, yMin - 16);
    const height = Math.max(H, yMax + 16) - top;
    svg.setAttribute('viewBox', `0 ${top} ${W} ${height}`);
    return h('div', { class: 'deps-graph-wrap' }, svg);
  }

  // ------------------------------------------------------------------ monitor view (RED metrics)

  const MONITOR_LOOKBACKS = [['15m', 'Last 15 minutes'], ['30m', 'Last 30 minutes'], ['1h', 'Last hour'], ['2h', 'Last 2 hours'],
    ['6h', 'Last 6 hours'], ['12h', 'Last 12 hours'], ['24h', 'Last 24 hours'], ['2d', 'Last 2 days'], ['7d', 'Last 7 days']];
  const MONITOR_KINDS = [['entry', 'Server & consumer spans (entry points)'], ['all', 'All spans'], ['server', 'Server'],
    ['consumer', 'Consumer'], ['client', 'Client'], ['producer', 'Producer'], ['internal', 'Internal']];

  async function showMonitor(params) {
    const serviceSel = h('select', { id: 'monitor-service', 'aria-label': 'Service' }, h('option', { value: '' }, 'Loading…'));
    const lbSel = h('select', { id: 'monitor-lookback', 'aria-label': 'Time window' },
      MONITOR_LOOKBACKS.map(([v, label]) => h('option', { value: v }, label)));
    const kindSel = h('select', { id: 'monitor-kind', 'aria-label': 'Span kind' },
      MONITOR_KINDS.map(([v, label]) => h('option', { value: v }, label)));
    const body = h('div', { id: 'monitor-body', class: 'monitor-body' });
    const el = h('div', { class: 'monitor-view', id: 'monitor-view' },
      h('div', { class: 'panel monitor-header' },
        h('h1', { class: 'page-title' }, 'Monitor'),
        h('div', { class: 'deps-controls' }, serviceSel, kindSel, lbSel,
          h('button', { class: 'btn btn-ghost', type: 'button', id: 'monitor-refresh', onclick: () => load() }, 'Refresh'))),
      body);
    mount(el, 'monitor');
    document.title = 'Monitor · aiecs-tracing';
    selectLookback(lbSel, params.get('lookback') || '1h');
    kindSel.value = MONITOR_KINDS.some(([k]) => k === params.get('spanKind')) ? params.get('spanKind') : 'entry';
    let services = [];
    try {
      const res = await api('/api/services');
      services = (Array.isArray(res.data) ? res.data : []).map(String).sort();
    } catch (e) {
      clear(body).append(h('div', { class: 'empty-state empty-error' }, emptyIcon('error'), h('h3', null, 'Could not load services'), h('p', null, e.message)));
      return;
    }
    clear(serviceSel);
    if (!services.length) {
      serviceSel.append(h('option', { value: '' }, 'No services yet'));
      body.append(h('div', { class: 'empty-state empty-empty' }, emptyIcon('empty'), h('h3', null, 'No services yet')));
      return;
    }
    for (const n of services) serviceSel.append(h('option', { value: n }, n));
    let preferred = params.get('service') || '';
    if (!services.includes(preferred)) {
      try { preferred = localStorage.getItem('aiecs.lastService') || ''; } catch (_e) { preferred = ''; }
    }
    serviceSel.value = services.includes(preferred) ? preferred : services[0];
    let operation = params.get('operation') || '';
    const load = async () => {
      replaceParams({ service: serviceSel.value, lookback: lbSel.value, spanKind: kindSel.value === 'entry' ? '' : kindSel.value, operation });
      clear(body).append(h('div', { class: 'empty-state empty-loading' }, emptyIcon('loading'), h('h3', null, 'Computing metrics…')));
      let data;
      try {
        const res = await api('/api/monitor', {
          service: serviceSel.value, endTs: Date.now(), lookback: lookbackMs(lbSel.value), spanKind: kindSel.value,
        });
        data = res.data;
      } catch (e) {
        clear(body).append(h('div', { class: 'empty-state empty-error' }, emptyIcon('error'), h('h3', null, 'Could not compute metrics'), h('p', null, e.message)));
        return;
      }
      if (!el.isConnected) return;
      const onPick = (op) => { operation = op; replaceParams({ operation: op }); renderMonitor(body, data, op, onPick); };
      renderMonitor(body, data, operation, onPick);
    };
    for (const c of [serviceSel, lbSel, kindSel]) c.addEventListener('change', () => { operation = ''; load(); });
    await load();
  }

  function renderMonitor(body, data, operation, onPick) {
    clear(body);
    const ops = data.operations || [];
    if (!ops.length) {
      body.append(h('div', { class: 'empty-state empty-empty' }, emptyIcon('empty'),
        h('h3', null, `No ${data.spanKind === 'entry' ? 'entry-point ' : ''}spans of ${data.service} in this window`),
        h('p', null, 'Pick a longer window, or “All spans”.')));
      return;
    }
    const selected = ops.find((o) => o.name === operation) || null;
    const shown = selected || data.total;
    const ts = data.timestamps;
    const colour = colourFor(data.service);
    body.append(
      h('div', { class: 'panel monitor-charts' },
        h('h2', { class: 'panel-title', id: 'monitor-title' },
          h('span', { style: { color: colour } }, data.service), selected ? `: ${selected.name}` : ' (all operations)',
          selected ? h('button', { type: 'button', class: 'btn btn-ghost btn-small', id: 'monitor-all', onclick: () => onPick('') }, 'Show all') : null),
        h('div', { class: 'chart-grid' },
          lineChart('Request rate', ts, [{ name: 'requests', values: shown.series.rate, colour }], fmtRate, 'chart-rate'),
          lineChart('Error rate', ts, [{ name: 'errors %', values: shown.series.errorPct, colour: '#d3343b' }], (v) => `${trimNum(v)}%`, 'chart-errors', 100),
          lineChart('Latency', ts, [
            { name: 'p99', values: shown.series.p99, colour: '#8e5cc9' },
            { name: 'p95', values: shown.series.p95, colour: '#e08a1e', dash: '5 3' },
            { name: 'p50', values: shown.series.p50, colour: '#2e9e6a' }], fmtDuration, 'chart-latency'))),
      h('div', { class: 'panel' },
        h('table', { class: 'data-table monitor-table', id: 'monitor-table' },
          h('thead', null, h('tr', null, h('th', null, 'Operation'), h('th', { class: 'num' }, 'Requests'),
            h('th', { class: 'num' }, 'Rate'), h('th', { class: 'num' }, 'Error %'), h('th', { class: 'num' }, 'P50'),
            h('th', { class: 'num' }, 'P95'), h('th', { class: 'num' }, 'P99'), h('th', null, 'Trend'))),
          h('tbody', null, ops.map((o) => h('tr', {
            class: `${o === selected ? 'is-selected' : ''}${o.errors ? ' has-errors' : ''}`, dataset: { operation: o.name },
            onclick: () => onPick(o.name === operation ? '' : o.name),
          },
          h('td', null, h('a', { href: '#', class: 'op-link', onclick: (e) => e.preventDefault() }, o.name || '(unnamed)')),
          h('td', { class: 'num' }, String(o.calls)),
          h('td', { class: 'num' }, fmtRate(o.rate)),
          h('td', { class: `num${o.errors ? ' v-error' : ''}` }, `${trimNum(o.errorPct || 0)}%`),
          h('td', { class: 'num' }, fmtDuration(o.p50)),
          h('td', { class: 'num' }, fmtDuration(o.p95)),
          h('td', { class: 'num' }, fmtDuration(o.p99)),
          h('td', null, sparkline(o.series.rate, colour))))))),
      h('p', { class: 'muted monitor-note' },
        `Computed from the stored spans: ${data.spanKind === 'entry' ? 'server and consumer spans, and root spans' : `${data.spanKind} spans`}, ` +
        `${fmtDuration(data.step)} steps; percentiles are nearest-rank.`));
  }

  function sparkline(values, colour) {
    const W = 120; const H = 24;
    const max = Math.max(1e-9, ...values.map((v) => v || 0));
    const pts = values.map((v, i) => `${((i / Math.max(1, values.length - 1)) * W).toFixed(1)},${(H - 2 - ((v || 0) / max) * (H - 4)).toFixed(1)}`);
    return s('svg', { class: 'sparkline', viewBox: `0 0 ${W} ${H}`, width: W, height: H, 'aria-hidden': 'true' },
      s('polyline', { points: pts.join(' '), fill: 'none', stroke: colour, 'stroke-width': 1.5 }));
  }

  /** An SVG line chart over time; null values leave gaps. */
  function lineChart(title, timestamps, series, fmt, id, fixedMax) {
    const W = 420; const H = 190;
    const m = { l: 56, r: 12, t: 28, b: 24 };
    const all = series.flatMap((se) => se.values.filter((v) => v != null));
    const top = Math.max(1e-9, ...all);
    const p10 = 10 ** Math.floor(Math.log10(top));
    const nice = [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].find((f) => f * p10 >= top) * p10; // round axis values
    const max = fixedMax != null ? Math.min(fixedMax, all.some((v) => v > 0) ? nice : 1) : nice;
    const n = timestamps.length;
    const x = (i) => m.l + (n <= 1 ? 0.5 : i / (n - 1)) * (W - m.l - m.r);
    const y = (v) => H - m.b - (v / max) * (H - m.t - m.b);
    const svg = s('svg', { class: 'line-chart', id, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title },
      s('text', { class: 'chart-title', x: m.l, y: 16 }, title));
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4;
      svg.append(s('line', { class: 'grid', x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }),
        s('text', { class: 'axis-label', x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, all.length ? fmt(v) : ''));
    }
    if (n) {
      svg.append(s('text', { class: 'axis-label', x: m.l, y: H - 6 }, fmtClock(timestamps[0])),
        s('text', { class: 'axis-label', x: W - m.r, y: H - 6, 'text-anchor': 'end' }, fmtClock(timestamps[n - 1])));
    }
    let lx = W - m.r;
    for (const se of [...series].reverse()) {
      const label = s('text', { class: 'legend-label', x: lx, y: 16, 'text-anchor': 'end', fill: se.colour }, se.name);
      svg.append(label);
      lx -= 10 + se.name.length * 7;
    }
    for (const se of series) {
      let d = '';
      let pen = false;
      se.values.forEach((v, i) => {
        if (v == null) { pen = false; return; }
        d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)} ${y(v).toFixed(1)} `;
        pen = true;
      });
      if (d) svg.append(s('path', { class: 'series', d, stroke: se.colour, 'stroke-dasharray': se.dash || null, dataset: { series: se.name } }));
      se.values.forEach((v, i) => {
        if (v != null) {
          svg.append(s('circle', { class: 'series-dot', cx: x(i), cy: y(v), r: 2.2, fill: se.colour },
            s('title', null, `${fmtClock(timestamps[i])} ${se.name}: ${fmt(v)}`)));
        }
      });
    }
    if (!all.length) svg.append(s('text', { class: 'axis-label', x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'No data'));
    return h('div', { class: 'chart' }, svg);
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
    const params = new URLSearchParams(location.search);
    const m = /^\/trace\/([^/]+)/.exec(path);
    if (m) {
      let id = m[1];
      try { id = decodeURIComponent(id); } catch (_e) { /* keep raw */ }
      // Jaeger's comparison URL: /trace/A...B?cohort=A&cohort=B
      const pair = /^([^.]*)\.\.\.([^.]*)$/.exec(id);
      if (pair) {
        const cohort = params.getAll('cohort');
        return showCompare((pair[1] || cohort[0] || '').toLowerCase(), (pair[2] || cohort[1] || '').toLowerCase());
      }
      return showTrace(id.toLowerCase(), params);
    }
    if (path === '/compare') {
      const cohort = params.getAll('cohort');
      return showCompare((cohort[0] || '').toLowerCase(), (cohort[1] || '').toLowerCase());
    }
    if (path === '/dependencies' || path === '/architecture') return showDependencies(params);
    if (path === '/monitor') return showMonitor(params);
    return showSearch(params);
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
    let resizeTimer = 0;
    window.addEventListener('resize', () => { // the minimap is a canvas; the waterfall fills its height
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        if (!traceState.trace || !document.getElementById('wf-rows')) return;
        drawMinimap(traceState.trace);
        renderWindow();
      }, 100);
    });
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
  window.aiecsTracing = {
    parseTags, buildTrace, fmtDuration, colourFor, criticalPath, otlpToJaeger, operationStats, diffTraces,
    state: traceState,
  };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
