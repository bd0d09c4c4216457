// The dashboard's page: renders what the server pushes (server-sent events of
// /api/events), and posts the buttons' actions to /api/actions with the generation it
// showed, so a change made meanwhile is refused. Every rule lives in stickyctl; this only
// draws and sends.
'use strict';

let state = { rollouts: [], error: null, tokenRequired: false, charts: null };
let route = null;
// The live stream (an EventSource), reopened by the browser itself after an error.
let events = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value == null) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child != null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function phase(view) {
  return el('span', { class: `phase ${view.tone}` }, view.phase);
}

function current() {
  return route && route.id != null ? state.rollouts.find((r) => r.id === route.id) : null;
}

// A time as the page shows every time, the server's history times included: UTC, to the
// second (view::when writes the same form).
function utc(date) {
  return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

function notice(text, error) {
  const box = document.getElementById('notice');
  box.replaceChildren(el('p', { class: error ? 'error' : '' }, text));
}

// ---- the list ----

function listPage(main) {
  const search = el('input', { id: 'search', type: 'search', placeholder: 'service, version, phase', oninput: drawList });
  main.replaceChildren(
    el('h1', {}, 'Rollouts'),
    el('p', {}, el('label', { for: 'search' }, 'Search '), search),
    el('table', { id: 'rollouts' },
      el('thead', {}, el('tr', {}, ['Rollout', 'Service', 'Phase', 'Stable:canary', 'Versions', 'Health', 'Auto'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {})),
    el('p', { id: 'empty', class: 'muted' }));
  drawList();
}

function drawList() {
  const body = document.querySelector('#rollouts tbody');
  if (!body) return;
  // What a search matches is stickyctl's (RolloutView::search); the page only looks it up.
  const query = (document.getElementById('search').value || '').trim().toLowerCase();
  const shown = state.rollouts.filter((r) => r.search.includes(query));
  body.replaceChildren(...shown.map((r) => el('tr', { 'data-id': r.id },
    el('td', {}, el('a', { href: `#/r/${encodeURIComponent(r.id)}` }, r.id)),
    el('td', {}, r.service),
    el('td', {}, phase(r)),
    el('td', { class: 'ratio-cell' }, r.ratio),
    el('td', {}, r.versions),
    el('td', {}, r.health),
    el('td', {}, r.auto))));
  document.getElementById('empty').textContent = state.error
    ? `Cannot read the rollouts: ${state.error}`
    : shown.length ? '' : 'No rollout matches.';
}

// ---- a rollout ----

function rolloutPage(main) {
  const steps = el('select', { id: 'weight-step' });
  const free = el('input', { id: 'weight-free', type: 'number', min: '0', max: '100', step: '0.01', inputmode: 'decimal' });
  main.replaceChildren(
    el('p', {}, el('a', { href: '#/' }, '← All rollouts')),
    el('h1', { id: 'title' }),
    el('div', { class: 'card' },
      el('p', {}, 'Phase: ', el('span', { id: 'phase' })),
      el('p', {}, 'Stable:canary ', el('span', { id: 'ratio', class: 'ratio' }), ' ', el('span', { id: 'versions', class: 'muted' })),
      el('p', { id: 'qa', class: 'muted' }),
      el('ol', { id: 'steps', class: 'steps', 'aria-label': 'Steps' }),
      el('p', {}, 'Position: ', el('span', { id: 'position' })),
      el('p', {}, 'Automatic progression: ', el('span', { id: 'auto' })),
      el('p', {}, 'Health: ', el('span', { id: 'health' }))),
    el('section', { class: 'card', 'aria-labelledby': 'actions-title' },
      el('h2', { id: 'actions-title' }, 'Actions'),
      el('div', { class: 'actions' },
        button('act-next', {}, () => send('next'), 'Next step'),
        button('act-pause', {}, (e) => send(e.target.dataset.action), 'Pause'),
        button('act-auto', { 'aria-pressed': 'false' }, (e) => send(e.target.dataset.action), 'Auto'),
        el('span', {},
          el('label', { for: 'weight-step' }, 'Step '), steps, ' ',
          el('label', { for: 'weight-free' }, 'or percent '), free, ' ',
          button('act-set', {}, setRatio, 'Set ratio…')),
        button('act-promote', {}, () => confirmThen('Promote the canary to stable for every client?', 'Promote', () => send('promote')), 'Promote…'),
        button('act-finish', {}, () => confirmThen('Remove the old version now? Its pages still loading get assets from the new stable.', 'Finish promotion', () => send('promote-finish')), 'Finish promotion…'),
        button('act-abort', { class: 'danger' }, () => confirmThen('Abort: send every client back to stable now?', 'Abort', () => send('abort')), 'Abort…'),
        el('span', {},
          el('label', { for: 'start-version' }, 'Canary version '),
          el('input', { id: 'start-version', type: 'text', autocomplete: 'off', spellcheck: 'false' }), ' ',
          button('act-start', {}, startCanary, 'Start canary…'))),
      el('div', { id: 'action-reasons', class: 'sr-only' })),
    el('section', { class: 'card', 'aria-labelledby': 'verdict-title' },
      el('h2', { id: 'verdict-title' }, 'Current verdict'), el('div', { id: 'verdict' })),
    el('section', { class: 'card', 'aria-labelledby': 'charts-title' },
      el('h2', { id: 'charts-title' }, 'Per version'), el('div', { id: 'charts', class: 'charts' })),
    el('section', { class: 'card', 'aria-labelledby': 'history-title' },
      el('h2', { id: 'history-title' }, 'History'),
      el('table', { id: 'history' },
        el('thead', {}, el('tr', {}, ['When', 'What (by whom)', 'Versions after'].map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', {}))));
  drawRollout();
}

function drawRollout() {
  const view = current();
  const title = document.getElementById('title');
  if (!title) return;
  if (!view) {
    title.textContent = `${route.id}: not found`;
    return;
  }
  title.textContent = `${view.id} (${view.service})`;
  document.title = `${view.id}: ${view.phase} ${view.ratio}`;
  document.getElementById('main').dataset.generation = view.generation;
  document.getElementById('phase').replaceChildren(phase(view));
  document.getElementById('ratio').textContent = view.ratio;
  document.getElementById('versions').textContent = view.versions;
  document.getElementById('qa').textContent = view.qa;
  document.getElementById('auto').textContent = view.auto;
  document.getElementById('health').textContent = view.health;
  document.getElementById('steps').replaceChildren(...view.steps.map((s) => el('li',
    { class: s.between ? `${s.state} between` : s.state, 'aria-current': s.state === 'current' ? 'step' : false },
    `${s.weight}%`, el('span', { class: 'muted' }, s.state === 'todo' ? '' : ` (${s.state}${s.between ? ', between steps' : ''})`))));
  document.getElementById('position').textContent = view.position;
  const pause = document.getElementById('act-pause');
  pause.dataset.action = view.paused ? 'resume' : 'pause';
  pause.textContent = view.paused ? 'Resume' : 'Pause';
  const auto = document.getElementById('act-auto');
  auto.dataset.action = view.autoOn ? 'auto-off' : 'auto-on';
  auto.setAttribute('aria-pressed', String(view.autoOn));
  auto.textContent = view.autoOn ? 'Auto is on: turn off' : 'Auto is off: turn on';
  const select = document.getElementById('weight-step');
  const stepsOnly = view.steps.filter((s) => !s.between);
  const options = stepsOnly.map((s) => String(s.weight)).join(',');
  if (select.dataset.options !== options) {
    select.dataset.options = options;
    select.replaceChildren(el('option', { value: '' }, '—'), ...stepsOnly.map((s) => el('option', { value: s.weight }, `${s.weight}%`)));
  }
  offer('act-next', view, 'next');
  offer('act-pause', view, pause.dataset.action);
  offer('act-auto', view, auto.dataset.action);
  offer('act-set', view, 'set-weight');
  offer('act-promote', view, 'promote');
  offer('act-finish', view, 'promote-finish');
  offer('act-abort', view, 'abort');
  offer('act-start', view, 'start');
  const verdict = document.getElementById('verdict');
  verdict.replaceChildren(...(view.verdict
    ? [el('p', {}, `${view.verdict.step}: `, el('strong', {}, view.verdict.outcome), ': ', view.verdict.reason),
      el('p', { class: 'muted' }, view.verdict.line),
      el('ul', {}, view.verdict.checks.map(([name, outcome, reason]) => el('li', {}, `${name}: ${outcome}: ${reason}`)))]
    : [el('p', { class: 'muted' }, 'Not judged yet.')]));
  drawCharts(view);
  document.querySelector('#history tbody').replaceChildren(...view.history.map((h) => el('tr', {},
    el('td', {}, el('time', { datetime: h.time }, h.when)), el('td', {}, h.action), el('td', {}, h.versions))));
}

function drawCharts(view) {
  const box = document.getElementById('charts');
  const chart = state.charts && state.charts[view.id];
  if (!state.charts) { box.replaceChildren(el('p', { class: 'muted' }, 'Start the dashboard with --prometheus URL for charts.')); return; }
  if (!chart) { box.replaceChildren(el('p', { class: 'muted' }, 'No canary to chart.')); return; }
  if (chart.error) { box.replaceChildren(el('p', {}, `Prometheus: ${chart.error}`)); return; }
  const versions = Object.keys(chart.versions);
  box.replaceChildren(
    el('p', { class: 'legend' }, versions.map((v, i) => el('span', { class: `v${i % 2}` }, `${i % 2 ? '- - -' : '———'} ${v}`))),
    figure('Requests per second', versions, chart.versions, (p) => p.rps, (y) => y.toFixed(1)),
    figure('Error rate', versions, chart.versions, (p) => p.errorRate * 100, (y) => `${y.toFixed(2)}%`),
    figure('p99 latency', versions, chart.versions, (p) => p.p99Ms, (y) => `${y.toFixed(0)} ms`),
    figure('Weight in effect (proxies)', versions, chart.versions, (p) => p.weight, (y) => `${y.toFixed(2)}%`),
    ...(chart.metrics || []).map((name) => figure(name, versions, chart.versions,
      (p) => (p.metrics && name in p.metrics ? p.metrics[name] : null), (y) => number(y))));
}

// A metric's value for people: 0.123, 1234.
function number(y) {
  return Math.abs(y) >= 100 ? y.toFixed(0) : y.toPrecision(3);
}

function figure(title, versions, series, value, label) {
  const [w, h] = [300, 120];
  const all = versions.flatMap((v) => series[v]);
  const maxAgo = Math.max(1, ...all.map((p) => p.ago));
  const maxY = Math.max(1e-9, ...all.map(value).filter((y) => y != null));
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', w); svg.setAttribute('height', h);
  svg.setAttribute('role', 'img');
  const latest = versions.map((v) => { const last = series[v][series[v].length - 1]; return `${v} ${last && value(last) != null ? label(value(last)) : '-'}`; });
  svg.setAttribute('aria-label', `${title}, now: ${latest.join(', ')}`);
  versions.forEach((v, i) => {
    const line = document.createElementNS(ns, 'polyline');
    const points = series[v].filter((p) => value(p) != null)
      .map((p) => `${(w - 4 - (p.ago / maxAgo) * (w - 8)).toFixed(1)},${(h - 4 - (value(p) / maxY) * (h - 20)).toFixed(1)}`);
    line.setAttribute('points', points.join(' '));
    line.setAttribute('fill', 'none');
    line.setAttribute('stroke', i % 2 ? '#c45100' : '#074b8f');
    line.setAttribute('stroke-width', '2');
    if (i % 2) line.setAttribute('stroke-dasharray', '5 3');
    svg.append(line);
  });
  const top = document.createElementNS(ns, 'text');
  top.setAttribute('x', 4); top.setAttribute('y', 12); top.setAttribute('font-size', '11');
  top.textContent = `max ${label(maxY)}`;
  svg.append(top);
  return el('figure', {}, el('figcaption', {}, `${title} (now: ${latest.join(', ')})`), svg);
}

// ---- actions ----

// An action's button: its handler runs only while the action is offered (aria-disabled
// keeps it focusable, so a keyboard or screen reader user reaches it and hears why not).
function button(id, attrs, handler, text) {
  const onclick = (event) => {
    if (event.currentTarget.getAttribute('aria-disabled') === 'true') {
      notice(event.currentTarget.title, true);
      return;
    }
    handler(event);
  };
  return el('button', Object.assign({ id, type: 'button', onclick }, attrs), text);
}

// Offers the button `id` as the server says `action` is offered now (rollout::offer, the
// transition's own rule): when not, disabled, with the CLI's reason on hover (title) and
// read with the button (aria-describedby).
function offer(id, view, action) {
  const node = document.getElementById(id);
  const offered = view.actions[action] || { enabled: false, why: `unknown action ${action}` };
  const whyId = `${id}-why`;
  let why = document.getElementById(whyId);
  if (!why) {
    why = el('span', { id: whyId });
    document.getElementById('action-reasons').append(why);
  }
  why.textContent = offered.enabled ? '' : `${node.textContent.replace('…', '')}: ${offered.why}`;
  node.setAttribute('aria-disabled', String(!offered.enabled));
  if (offered.enabled) {
    node.removeAttribute('title');
    node.removeAttribute('aria-describedby');
  } else {
    node.title = offered.why;
    node.setAttribute('aria-describedby', whyId);
  }
}

// Asks before `then`; the dialog's button names the action (`label`), not "Confirm".
function confirmThen(text, label, then) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = label;
  dialog.returnValue = '';
  dialog.onclose = () => { if (dialog.returnValue === 'ok') then(); };
  dialog.showModal();
  document.getElementById('confirm-cancel').focus();
}

function setRatio() {
  const free = document.getElementById('weight-free').value;
  const step = document.getElementById('weight-step').value;
  const text = free !== '' ? free : step;
  const weight = Number(text);
  if (text === '' || !Number.isFinite(weight)) {
    notice('Pick a step or type a percent for the canary first.', true);
    return;
  }
  const view = current();
  confirmThen(`Give ${view && view.canary ? view.canary : 'the canary'} ${weight}% of clients (stable:canary ${100 - weight}:${weight})?`,
    'Set ratio', async () => {
      // Once applied, the fields are cleared: the ratio shown is the rollout's again.
      if (await send('set-weight', { weight })) {
        document.getElementById('weight-free').value = '';
        document.getElementById('weight-step').value = '';
      }
    });
}

function startCanary() {
  const field = document.getElementById('start-version');
  const version = field.value.trim();
  if (version === '') {
    notice('Type the canary\'s version name first.', true);
    return;
  }
  confirmThen(`Start canary ${version} at 0%? Only QA reaches it (the override) until it gets a share.`,
    'Start canary', async () => {
      if (await send('start', { version })) field.value = '';
    });
}

// Posts `action` with its `extra` fields (a weight, a version); whether it was applied.
async function send(action, extra) {
  const view = current();
  if (!view) return false;
  const headers = { 'content-type': 'application/json' };
  const token = document.getElementById('token').value;
  if (token) headers.authorization = `Bearer ${token}`;
  const body = JSON.stringify(Object.assign({ rollout: view.id, action, generation: view.generation }, extra));
  let answer;
  try {
    const response = await fetch('/api/actions', { method: 'POST', headers, body });
    answer = await response.json();
    if (response.status === 409) await refresh();
  } catch (err) {
    answer = { error: `the dashboard did not answer: ${err}` };
  }
  notice(answer.error || answer.message, Boolean(answer.error));
  return !answer.error;
}

// ---- live state and routing ----

async function refresh() {
  const response = await fetch('/api/rollouts');
  apply(await response.json());
}

function apply(next) {
  state = next;
  document.getElementById('token-box').hidden = !state.tokenRequired;
  if (route && route.id != null) drawRollout(); else drawList();
}

// A hand-typed link may hold a lone '%': shown as typed rather than a page that stops.
function decodeHash(text) {
  try {
    return decodeURIComponent(text);
  } catch (err) {
    return text;
  }
}

function navigate() {
  const hash = location.hash || '#/';
  const main = document.getElementById('main');
  route = hash.startsWith('#/r/') ? { id: decodeHash(hash.slice(4)) } : { id: null };
  if (route.id != null) rolloutPage(main); else listPage(main);
}

// The connection's state (announced when it changes) and when the page last heard from
// the server: a state, or the `alive` it sends every second when nothing changed.
function connection(text) {
  const live = document.getElementById('live');
  if (live.textContent !== text) live.textContent = text;
}

function heard() {
  connection('live');
  document.getElementById('updated').textContent = `updated ${utc(new Date())}`;
}

function connect() {
  events = new EventSource('/api/events');
  events.addEventListener('state', (event) => {
    heard();
    apply(JSON.parse(event.data));
  });
  events.addEventListener('alive', heard);
  events.onerror = () => connection('reconnecting…');
}

window.addEventListener('hashchange', navigate);
navigate();
connect();
