// Track playback (#/playback?plate=P&since=ms&until=ms): the track drawn, a marker moving along
// it at a chosen speed, a scrub bar, and the violations as markers on a timeline.
import * as api from './api.js';
import { el, fromTemplate } from './dom.js';
import { fmtClock, fmtTime, fromInputValue, t, toInputValue, tv } from './i18n.js';
import { createCityMap, fitPoints, labelMarker } from './mapstyle.js';

const MAX_RANGE_MS = 24 * 3600_000;
const EMPTY = { type: 'FeatureCollection', features: [] };
const SVG = 'http://www.w3.org/2000/svg';

function playbackLayers(map) {
  map.addSource('pb-track', { type: 'geojson', data: EMPTY });
  map.addSource('pb-violations', { type: 'geojson', data: EMPTY });
  map.addLayer({ id: 'pb-track', type: 'line', source: 'pb-track', layout: { 'line-join': 'round', 'line-cap': 'round' },
    paint: { 'line-color': '#1d4ed8', 'line-width': 3, 'line-opacity': 0.8 } });
  map.addLayer({ id: 'pb-violations', type: 'circle', source: 'pb-violations',
    paint: { 'circle-radius': 6, 'circle-color': '#ffffff', 'circle-stroke-color': '#dc2626', 'circle-stroke-width': 2.5 } });
}

// The position at ts, between the two fixes around it.
function positionAt(track, ts) {
  const { rows, ts: T, lon: X, lat: Y } = track;
  let lo = 0;
  let hi = rows.length - 1;
  if (ts <= rows[0][T]) return [rows[0][X], rows[0][Y]];
  if (ts >= rows[hi][T]) return [rows[hi][X], rows[hi][Y]];
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (rows[mid][T] <= ts) lo = mid; else hi = mid;
  }
  const f = (ts - rows[lo][T]) / (rows[hi][T] - rows[lo][T] || 1);
  return [rows[lo][X] + f * (rows[hi][X] - rows[lo][X]), rows[lo][Y] + f * (rows[hi][Y] - rows[lo][Y])];
}

export async function mount(root, ctx) {
  root.append(fromTemplate('tpl-playback'));
  const $ = sel => root.querySelector(sel);
  const [plate, from, to, scrub, bar, status] = ['#playback-plate', '#playback-from', '#playback-to',
    '#playback-scrub', '#playback-timeline', '#playback-status'].map($);
  const state = { track: null, violations: [], ts: null, playing: false, speed: 60 };
  let frame = null;
  let lastFrame = null;

  const now = Date.now();
  plate.value = ctx.params.get('plate') || '';
  from.value = toInputValue(Number(ctx.params.get('since')) || now - 3600_000);
  to.value = toInputValue(Number(ctx.params.get('until')) || now);
  state.speed = Number($('#playback-speed').value);

  api.get('/v1/registry/vehicles', { limit: 5000 }).then(vehicles => {
    $('#playback-plates').replaceChildren(...vehicles.map(v => el('option', { value: v.plate })));
  }).catch(() => { /* suggestions only */ });

  const map = await createCityMap($('#playback-map'), { layers: await ctx.mapLayers(), bbox: ctx.config.bbox });
  playbackLayers(map);
  const head = labelMarker('head', '');

  const first = () => state.track.rows[0][state.track.ts];
  const last = () => state.track.rows.at(-1)[state.track.ts];

  function setControls(enabled) {
    for (const id of ['#playback-play', '#playback-pause']) $(id).disabled = !enabled;
    scrub.disabled = !enabled;
  }

  function drawTimeline() {
    const { rows, ts: T } = state.track;
    const t0 = first();
    const span = last() - t0 || 1;
    const speed = state.track.columns.indexOf('speed_kmh');
    const top = Math.max(60, ...rows.map(r => r[speed] || 0));
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', '0 0 1000 100');
    svg.setAttribute('preserveAspectRatio', 'none');
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('class', 'speed');
    line.setAttribute('points', rows.map(r => `${((r[T] - t0) / span) * 1000},${100 - ((r[speed] || 0) / top) * 80}`).join(' '));
    svg.append(line);
    const at = ms => `${Math.min(100, Math.max(0, ((ms - t0) / span) * 100))}%`;
    const ticks = [0, 0.25, 0.5, 0.75, 1].map(f => el('span', { class: 'tick', style: `left:${f * 100}%;--shift:${-f * 100}%` }, fmtClock(t0 + f * span)));
    const markers = state.violations.map(v => el('span', {
      class: 'timeline-violation', style: `left:${at(v.start_ts)}`, dataset: { violationId: v.id },
      title: `${tv('rule', v.rule)} · ${fmtTime(v.start_ts)}`,
      onclick: event => { event.stopPropagation(); seek(v.start_ts); },
    }));
    bar.replaceChildren(svg, ...ticks, ...markers, el('span', { class: 'playhead' }));
  }

  function seek(ts) {
    if (!state.track) return;
    state.ts = Math.min(Math.max(ts, first()), last());
    scrub.value = state.ts;
    $('#playback-time').textContent = fmtTime(state.ts);
    head.setLngLat(positionAt(state.track, state.ts));
    bar.querySelector('.playhead').style.left = `${((state.ts - first()) / (last() - first() || 1)) * 100}%`;
    for (const marker of bar.querySelectorAll('.timeline-violation')) {
      const v = state.violations.find(x => x.id === marker.dataset.violationId);
      marker.classList.toggle('reached', v.start_ts <= state.ts);
    }
  }

  function step(time) {
    if (!state.playing) return;
    seek(state.ts + (time - (lastFrame ?? time)) * state.speed);
    lastFrame = time;
    if (state.ts >= last()) pause();
    else frame = requestAnimationFrame(step);
  }

  function play() {
    if (!state.track || state.playing) return;
    if (state.ts >= last()) seek(first()); // from the start again
    state.playing = true;
    lastFrame = null;
    frame = requestAnimationFrame(step);
  }

  function pause() {
    state.playing = false;
    cancelAnimationFrame(frame);
  }

  async function load() {
    pause();
    const since = fromInputValue(from.value);
    const until = fromInputValue(to.value);
    const p = plate.value.trim();
    if (!p || since === null || until === null || until <= since || until - since > MAX_RANGE_MS) {
      status.textContent = t('playback.range');
      status.classList.add('error');
      return;
    }
    history.replaceState(null, '', `#/playback?plate=${encodeURIComponent(p)}&since=${since}&until=${until}`);
    status.textContent = t('loading');
    status.classList.remove('error');
    let answer;
    try {
      answer = await api.get(`/v1/vehicles/${encodeURIComponent(p)}/track`, { since, until });
    } catch (err) {
      status.textContent = err.message;
      status.classList.add('error');
      return;
    }
    const col = name => answer.columns.indexOf(name);
    state.track = { columns: answer.columns, rows: answer.rows, ts: col('ts'), lon: col('lon'), lat: col('lat') };
    state.violations = answer.violations;
    const points = answer.rows.map(r => [r[state.track.lon], r[state.track.lat]]);
    map.getSource('pb-track').setData(points.length > 1
      ? { type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: points } } : EMPTY);
    map.getSource('pb-violations').setData({ type: 'FeatureCollection', features: answer.violations
      .filter(v => v.start_lon !== null && v.start_lon !== undefined)
      .map(v => ({ type: 'Feature', properties: { id: v.id }, geometry: { type: 'Point', coordinates: [v.start_lon, v.start_lat] } })) });
    if (!points.length) {
      state.track = null;
      head.remove();
      bar.replaceChildren();
      setControls(false);
      $('#playback-time').textContent = '–';
      status.textContent = t('playback.empty');
      return;
    }
    status.textContent = `${points.length.toLocaleString()} ${t('playback.fixes')}`;
    scrub.min = first();
    scrub.max = last();
    head.setLngLat(points[0]).addTo(map);
    fitPoints(map, points);
    drawTimeline();
    setControls(true);
    seek(first());
  }

  $('#playback-form').addEventListener('submit', event => {
    event.preventDefault();
    load();
  });
  $('#playback-play').addEventListener('click', play);
  $('#playback-pause').addEventListener('click', pause);
  $('#playback-speed').addEventListener('change', event => { state.speed = Number(event.target.value); });
  scrub.addEventListener('input', () => seek(Number(scrub.value)));
  bar.addEventListener('click', event => {
    if (!state.track) return;
    const box = bar.getBoundingClientRect();
    seek(first() + ((event.clientX - box.left) / box.width) * (last() - first()));
  });
  if (plate.value) await load();

  return {
    map,
    playback: () => ({
      ts: state.ts, playing: state.playing,
      reached: state.violations.filter(v => state.ts !== null && v.start_ts <= state.ts).map(v => v.id),
    }),
    relabel() {
      if (state.track) {
        drawTimeline();
        seek(state.ts);
      }
    },
    unmount() {
      pause();
      map.remove();
    },
  };
}
