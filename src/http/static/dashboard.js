// lvsd's dashboard in the browser: listens to /api/stream (server-sent events: `frame` once a
// second, `log` with new events) and updates the page in place, keyed by service and real server
// so that a weight being typed survives the next frame. Actions POST to /api/action with the
// token the operator entered (kept in this tab's sessionStorage only). Every text from lvsd goes
// through textContent, never innerHTML.
/* global document, window, EventSource, fetch, sessionStorage */

const TOKEN_KEY = 'lvsd-token';
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'class') node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

/** The child of `parent` with data-key `key`, made by `create` the first time. */
function keyed(parent, key, create) {
  for (const child of parent.children) if (child.dataset.key === key) return child;
  const node = create();
  node.dataset.key = key;
  parent.append(node);
  return node;
}

/** Removes the keyed children of `parent` whose key is not in `keep`. */
function prune(parent, keep) {
  for (const child of [...parent.children]) if (!keep.has(child.dataset.key)) child.remove();
}

function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
}

const UNITS = ['', 'K', 'M', 'G', 'T'];
function human(value, unit = '') {
  let v = Number(value);
  let i = 0;
  while (Math.abs(v) >= 1000 && i < UNITS.length - 1) {
    v /= 1000;
    i++;
  }
  const text = i === 0 ? String(Math.round(v * 10) / 10) : v.toFixed(v < 10 ? 2 : 1);
  return `${text}${UNITS[i]}${unit}`;
}

function card(parent, key, label) {
  const node = keyed(parent, key, () =>
    el('div', { class: 'card' }, el('div', { class: 'value' }), el('div', { class: 'label' }, label)),
  );
  return node.querySelector('.value');
}

function renderSummary(frame) {
  const box = $('summary');
  const dp = frame.dataPath;
  const rates = frame.services.reduce(
    (sum, s) => ({
      cps: sum.cps + s.rates.cps,
      inbps: sum.inbps + s.rates.inbps,
      outbps: sum.outbps + s.rates.outbps,
    }),
    { cps: 0, inbps: 0, outbps: 0 },
  );
  const active = frame.services.reduce((sum, s) => sum + s.activeConns, 0);
  const drops = Object.values(dp.drops).reduce((a, b) => a + b, 0);
  setText(card(box, 'services', 'virtual services'), frame.services.length);
  setText(card(box, 'cps', 'connections/s'), human(rates.cps));
  setText(card(box, 'in', 'in (bytes/s)'), human(rates.inbps, 'B'));
  setText(card(box, 'out', 'out (bytes/s)'), human(rates.outbps, 'B'));
  setText(card(box, 'active', 'active connections'), active);
  setText(card(box, 'forwarded', 'packets forwarded'), human(dp.forwardedIn + dp.forwardedOut));
  setText(card(box, 'drops', 'packets dropped'), human(drops));
  if (frame.connTable) {
    const t = frame.connTable;
    setText(card(box, 'table', 'table entries / capacity'), `${t.entries} / ${human(t.capacity)}`);
  }
}

const RATE_FIELDS = [
  ['cps', 'CPS'],
  ['inpps', 'InPPS'],
  ['outpps', 'OutPPS'],
  ['inbps', 'InBPS'],
  ['outbps', 'OutBPS'],
];

function badge(text, kind) {
  return el('span', { class: `badge ${kind}` }, text);
}

function stateCell(cell, server) {
  const key = `${server.admin}/${server.health}/${server.scheduled}`;
  if (cell.dataset.state === key) return;
  cell.dataset.state = key;
  cell.replaceChildren(
    badge(server.health, server.health === 'up' ? 'ok' : 'bad'),
    ' ',
    badge(server.admin, server.admin === 'ready' ? 'ok' : 'warn'),
  );
  if (!server.scheduled) cell.append(' ', badge('not scheduled', 'bad'));
}

function checksCell(cell, server) {
  const history = server.history;
  const key = history.map((r) => `${r.time}${r.ok}`).join() + (server.checks ? server.checks.alive : '-');
  if (cell.dataset.checks === key) return;
  cell.dataset.checks = key;
  if (!server.checks) {
    cell.replaceChildren(el('span', { class: 'muted' }, 'no checks'));
    return;
  }
  const dots = history.map((r) => {
    const when = new Date(r.time).toLocaleTimeString();
    return el('span', {
      class: `dot ${r.ok ? 'ok' : 'bad'}`,
      title: `${when} ${r.kind}: ${r.reason} (${r.durationMs} ms)`,
    });
  });
  const last = history[history.length - 1];
  cell.replaceChildren(...dots, last ? el('span', { class: 'muted' }, ` ${last.kind}: ${last.reason}`) : '');
}

function actionsCell(service, server) {
  const weight = el('input', {
    type: 'number',
    min: '0',
    max: '65535',
    'aria-label': 'weight',
    'data-field': 'weight-input',
  });
  const button = (action, label) => {
    const b = el('button', { type: 'button', 'data-action': action }, label);
    b.addEventListener('click', () => {
      if (action === 'set-weight') {
        if (weight.value === '') return;
        act(service, server, action, Number(weight.value));
      } else act(service, server, action);
    });
    return b;
  };
  return el(
    'td',
    { class: 'actions' },
    button('drain', 'Drain'),
    button('ready', 'Ready'),
    button('maint', 'Maint'),
    weight,
    button('set-weight', 'Set'),
    button('clear-weight', 'Clear'),
  );
}

const SERVER_COLUMNS = [
  'server',
  'state',
  'weight',
  'active',
  'inactive',
  'cps',
  'inbps',
  'outbps',
  'checks',
];

function renderServer(tbody, service, server, actions) {
  const row = keyed(tbody, server.id, () => {
    const tr = el('tr', { 'data-server': `${service.id}|${server.id}` });
    for (const name of SERVER_COLUMNS) tr.append(el('td', { 'data-field': name }));
    tr.append(actionsCell(service.id, server.id));
    return tr;
  });
  const cell = (name) => row.querySelector(`[data-field="${name}"]`);
  setText(cell('server'), `${server.id} (${server.method})`);
  stateCell(cell('state'), server);
  const extra = [];
  if (server.operatorWeight !== null) extra.push(`operator ${server.operatorWeight}`);
  if (server.dynamicWeight !== null) extra.push(`checks ${server.dynamicWeight}`);
  const weightText = `${server.weight} / ${server.configuredWeight}${extra.length ? ` (${extra.join(', ')})` : ''}`;
  setText(cell('weight'), weightText);
  setText(cell('active'), server.activeConns);
  setText(cell('inactive'), server.inactConns);
  setText(cell('cps'), human(server.rates.cps));
  setText(cell('inbps'), human(server.rates.inbps, 'B'));
  setText(cell('outbps'), human(server.rates.outbps, 'B'));
  checksCell(cell('checks'), server);
  row.querySelector('.actions').hidden = !actions;
}

function renderServices(frame) {
  const box = $('services');
  $('no-services').hidden = frame.services.length > 0;
  for (const service of frame.services) {
    const section = keyed(box, service.id, () => {
      const head = el(
        'tr',
        {},
        ...[
          'real server',
          'state',
          'weight eff / conf',
          'active',
          'inactive',
          'CPS',
          'InBPS',
          'OutBPS',
          'checks',
        ].map((t) => el('th', {}, t)),
        el('th', { class: 'actions' }, 'actions'),
      );
      return el(
        'article',
        { class: 'service', 'data-service': service.id },
        el('h3', {}, el('span', { class: 'name' }), ' ', el('span', { class: 'muted sched' })),
        el('div', { class: 'rates' }),
        el('table', { class: 'servers' }, el('thead', {}, head), el('tbody')),
      );
    });
    setText(section.querySelector('.name'), service.id);
    const persistent =
      service.persistentTimeout === null ? '' : `, persistent ${service.persistentTimeout} s`;
    setText(section.querySelector('.sched'), `${service.scheduler}${persistent}`);
    const rates = section.querySelector('.rates');
    for (const [field, label] of RATE_FIELDS) {
      const node = keyed(rates, field, () => el('span', { 'data-field': field }));
      setText(node, `${label} ${human(service.rates[field])}`);
    }
    const conns = keyed(rates, 'conns', () => el('span', { 'data-field': 'conns' }));
    setText(
      conns,
      `active ${service.activeConns}, inactive ${service.inactConns}, total ${service.stats.conns}`,
    );
    section.querySelector('th.actions').hidden = !frame.actions;
    const tbody = section.querySelector('tbody');
    for (const server of service.servers) renderServer(tbody, service, server, frame.actions);
    prune(tbody, new Set(service.servers.map((s) => s.id)));
  }
  prune(box, new Set(frame.services.map((s) => s.id)));
}

function fillTable(tbody, rows) {
  tbody.replaceChildren(
    ...rows.map((cells) =>
      el('tr', {}, ...cells.map(([text, cls]) => el('td', cls ? { class: cls } : {}, String(text)))),
    ),
  );
}

function renderDrops(frame) {
  const dp = frame.dataPath;
  const rows = Object.entries(dp.drops).map(([reason, n]) => [['data path'], [reason], [n, 'num']]);
  if (dp.device) {
    for (const [reason, n] of Object.entries(dp.device.drops))
      rows.push([['packet loop'], [reason], [n, 'num']]);
  }
  if (frame.connTable) {
    rows.push([['connection table'], ['refused (full)'], [frame.connTable.refusedFull, 'num']]);
    rows.push([['connection table'], ['early drops'], [frame.connTable.earlyDrops, 'num']]);
    rows.push([
      ['connection table'],
      ['drop_entry evictions'],
      [frame.connTable.defense.droppedEntries, 'num'],
    ]);
  }
  fillTable($('drops').tBodies[0], rows);
}

const MODES = ['never', 'automatic (off)', 'automatic (on)', 'always'];

function renderTable(frame) {
  const t = frame.connTable;
  const rows = t
    ? [
        [['entries'], [`${t.entries} of ${t.capacity} (${t.templates} templates)`]],
        [['drop_entry'], [MODES[t.defense.dropEntry]]],
        [
          ['secure_tcp'],
          [`${MODES[t.defense.secureTcp]}, switched on ${t.defense.secureTcpActivations} times`],
        ],
        [['threshold'], [`${t.defense.thresholdPercent}% in use`]],
        [['early drop'], [t.defense.earlyDrop ? 'on' : 'off']],
      ]
    : [[['no connection table in this snapshot']]];
  fillTable($('conntable').tBodies[0], rows);
  const none = [[['none configured (lvsadm --start-daemon)']]];
  fillTable(
    $('sync').tBodies[0],
    frame.sync.length === 0
      ? none
      : frame.sync.map((d) => [
          [d.state],
          [d.interface],
          [d.syncId],
          [d.stats ? (d.state === 'master' ? d.stats.sent : d.stats.received) : '-', 'num'],
          [d.stats ? d.stats.conns : '-', 'num'],
          [d.stats ? d.stats.dropped : '-', 'num'],
        ]),
  );
  const c = frame.connections;
  const total = t ? t.entries : c.sampledFrom;
  const from = total > c.sampledFrom ? `, from the first ${c.sampledFrom}; all: lvsadm -Lnc` : '';
  setText($('conn-note'), `(${c.rows.length} shown of ${total}${from})`);
  fillTable(
    $('connections').tBodies[0],
    c.rows.map((r) => [[r.proto], [r.client], [r.virtual], [r.server], [r.state], [r.expiresS, 'num']]),
  );
}

function addEvents(events) {
  const list = $('events');
  for (const e of events) {
    const when = new Date(e.time).toLocaleTimeString();
    list.prepend(
      el('li', { class: `event ${e.kind}` }, el('time', {}, when), ' ', badge(e.kind, 'kind'), ' ', e.text),
    );
  }
  while (list.children.length > 200) list.lastElementChild.remove();
}

function render(frame) {
  $('auth').hidden = !frame.actions;
  $('readonly').hidden = frame.actions;
  setText($('updated'), `updated ${new Date(frame.time).toLocaleTimeString()}`);
  renderSummary(frame);
  renderServices(frame);
  renderDrops(frame);
  renderTable(frame);
}

function say(text, ok) {
  const node = $('action-result');
  node.className = ok ? 'ok' : 'bad';
  setText(node, text);
}

async function act(service, server, action, weight) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return say('enter the token first', false);
  const body = { service, server, action, ...(weight === undefined ? {} : { weight }) };
  try {
    const reply = await fetch('/api/action', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    const answer = await reply.json().catch(() => ({}));
    if (reply.ok)
      say(`${action}${weight === undefined ? '' : ` ${weight}`} ${service} -> ${server}: done`, true);
    else say(`${action} ${server}: ${answer.error ?? reply.statusText} (${reply.status})`, false);
  } catch (err) {
    say(`${action} ${server}: ${err.message}`, false);
  }
}

function connect() {
  const status = $('status');
  const source = new EventSource('/api/stream');
  source.addEventListener('open', () => {
    status.className = 'status up';
    setText(status, 'live');
  });
  source.addEventListener('error', () => {
    status.className = 'status down';
    setText(status, 'reconnecting');
  });
  source.addEventListener('frame', (e) => render(JSON.parse(e.data)));
  let first = true;
  source.addEventListener('log', (e) => {
    // Each (re)connection starts with the whole log.
    if (first) $('events').replaceChildren();
    first = false;
    addEvents(JSON.parse(e.data));
  });
  source.addEventListener('open', () => (first = true));
}

window.addEventListener('DOMContentLoaded', () => {
  $('auth').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token').value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    $('token').value = '';
    setText($('auth-state'), token ? 'token set' : 'no token');
  });
  if (sessionStorage.getItem(TOKEN_KEY)) setText($('auth-state'), 'token set');
  connect();
});
