// The console's shell: login, header and navigation, the hash router, and the test hooks on
// window.muckwatchConsole. Each view is a module loaded when first visited (the public page
// needs no map library) whose mount(root, ctx) returns {map?, unmount, relabel?, …}.
import * as api from './api.js';
import { el } from './dom.js';
import { lang, setLang, setTimeZone, t, translate } from './i18n.js';

const VIEWS = {
  live: { load: () => import('./live.js'), may: me => me.permissions.includes('live.read') },
  review: { load: () => import('./review.js'), may: me => me.permissions.includes('queue.read') },
  playback: { load: () => import('./playback.js'), may: me => me.permissions.includes('track.read') },
  company: { load: () => import('./company.js'), may: me => me.role === 'company' },
  public: { load: () => import('./public.js'), may: () => true },
};

const HOME = { officer: 'live', supervisor: 'live', analyst: 'live', company: 'company' };

let me = null;
let config = null;
let layers = null;    // /v1/map/layers, fetched once per login (a company sees its own corridors)
let current = null;   // {view, generation}
let generation = 0;

const $ = sel => document.querySelector(sel);

function home() {
  return `#/${HOME[me.role] || 'public'}`;
}

function parseHash() {
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  const [name, ...rest] = path.split('/');
  return { name: name || null, arg: rest.length ? decodeURIComponent(rest.join('/')) : null,
    params: new URLSearchParams(query || '') };
}

async function whoAmI() {
  try {
    return await api.get('/v1/me');
  } catch (err) {
    if (err.status !== 401 || !api.token()) throw err;
    api.setToken(null); // an expired token: carry on as the public
    return api.get('/v1/me');
  }
}

function renderHeader() {
  const anonymous = !api.token();
  const roleLabel = t(`role.${me.role}`);
  $('#whoami').textContent = anonymous ? '' : `${me.account} · ${roleLabel}${lang() === 'zh' ? ` (${me.role})` : ''}`;
  $('#whoami').hidden = anonymous;
  $('#logout').hidden = anonymous;
  $('#login-form').hidden = !anonymous;
  const active = parseHash().name;
  $('#nav').replaceChildren(...Object.entries(VIEWS).filter(([, v]) => v.may(me)).map(([name]) =>
    el('a', { href: `#/${name}`, 'data-nav': name, class: name === active ? 'active' : null }, t(`nav.${name}`))));
  document.title = `${t('title')} · ${config.city}`;
}

function message(key, detail) {
  $('#view').replaceChildren(el('p', { class: 'message' }, t(key), detail ? el('span', { class: 'error' }, ` ${detail}`) : null));
}

async function route() {
  const { name, arg, params } = parseHash();
  if (!name) {
    location.replace(home());
    return;
  }
  const mine = ++generation;
  current?.view?.unmount();
  current = null;
  renderHeader();
  const spec = VIEWS[name];
  if (!spec) return message('not.found');
  if (!spec.may(me)) return message('need.login');
  const root = $('#view');
  root.replaceChildren();
  const ctx = {
    config, me, arg, params,
    mapLayers: () => (layers ??= api.get('/v1/map/layers')),
  };
  try {
    const view = await (await spec.load()).mount(root, ctx);
    if (mine !== generation) view.unmount(); // the user went elsewhere while it loaded
    else current = { view };
  } catch (err) {
    if (mine === generation) message('loading', err.message);
    console.error(err);
  }
}

async function login(token) {
  api.setToken(token);
  $('#login-error').textContent = '';
  try {
    me = await api.get('/v1/me');
  } catch (err) {
    api.setToken(null);
    $('#login-error').textContent = `${t('login.failed')}: ${err.message}`;
    return;
  }
  layers = null;
  $('#login-token').value = '';
  if (location.hash === home()) route();
  else location.hash = home();
}

async function logout() {
  api.setToken(null);
  layers = null;
  me = await whoAmI();
  if (location.hash === home()) route();
  else location.hash = home();
}

function toggleLang() {
  setLang(lang() === 'zh' ? 'en' : 'zh');
  translate();
  renderHeader();
  current?.view?.relabel?.();
}

// requestAnimationFrame deltas since the last reset: the map's smoothness, measured.
const frames = [];
let lastFrame = null;
function tick(now) {
  if (lastFrame !== null && frames.length < 1_000_000) frames.push(now - lastFrame);
  lastFrame = now;
  requestAnimationFrame(tick);
}

function frameStats(reset = false) {
  const sorted = [...frames].sort((a, b) => a - b);
  const at = q => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : 0);
  const stats = { frames: sorted.length, median_ms: at(0.5), p95_ms: at(0.95), max_ms: sorted.at(-1) || 0 };
  if (reset) frames.length = 0;
  return stats;
}

window.muckwatchConsole = {
  get map() { return current?.view?.map ?? null; },
  trucks: () => current?.view?.trucks?.() ?? [],
  truckScreenPoint: plate => current?.view?.truckScreenPoint?.(plate) ?? null,
  frameStats,
  get playback() { return current?.view?.playback?.() ?? { ts: null, playing: false, reached: [] }; },
};

async function boot() {
  setLang(lang());
  translate();
  requestAnimationFrame(tick);
  // #token=… logs in, then leaves the URL so it is not bookmarked or shared
  const tokenInHash = /^#token=(.+)$/.exec(location.hash);
  if (tokenInHash) {
    api.setToken(decodeURIComponent(tokenInHash[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  try {
    [me, config] = await Promise.all([whoAmI(), api.get('/v1/console/config')]);
  } catch (err) {
    message('loading', err.message);
    return;
  }
  if (tokenInHash && !api.token()) $('#login-error').textContent = t('login.failed');
  setTimeZone(config.timezone);
  $('#lang-toggle').addEventListener('click', toggleLang);
  $('#logout').addEventListener('click', logout);
  $('#login-form').addEventListener('submit', event => {
    event.preventDefault();
    const token = $('#login-token').value.trim();
    if (token) login(token);
  });
  window.addEventListener('hashchange', () => {
    const again = /^#token=(.+)$/.exec(location.hash);
    if (again) {
      history.replaceState(null, '', location.pathname + location.search);
      login(decodeURIComponent(again[1]));
    } else {
      route();
    }
  });
  if (tokenInHash) history.replaceState(null, '', home());
  route();
}

boot();
