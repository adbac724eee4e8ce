// The live map: every truck's last position by state, kept current from the event stream.
//
// 20,000 trucks stay smooth because the map is never touched per message: events only update
// the Fleet, and once a second the changed trucks go to the one GeoJSON source as a diff
// (updateData, keyed by numeric feature ids), the next diff waiting until the last is applied.
import * as api from './api.js';
import { el, fromTemplate, options, setFields } from './dom.js';
import { fmtTime, t, tv } from './i18n.js';
import { Fleet, STATES, STATE_COLOURS } from './livedata.js';
import { createCityMap, KIND_COLOURS } from './mapstyle.js';

const FLUSH_MS = 1000;
// while the map is dragged or zoomed every frame is a full redraw; a diff then costs the
// worker a re-tiling and the map several more redraws, so updates wait for the movement to
// end — at most this long, so a long drag still sees the trucks move
const MOVING_DEFER_MS = 3000;
const TRACK_MS = 3600_000;
const EMPTY = { type: 'FeatureCollection', features: [] };

function truckLayers(map) {
  const colour = ['match', ['get', 'state'], ...STATES.flatMap(s => [s, STATE_COLOURS[s]]), '#000000'];
  const offline = ['==', ['get', 'state'], 'offline'];
  map.addSource('trucks', { type: 'geojson', data: EMPTY });
  map.addSource('selected', { type: 'geojson', data: EMPTY });
  map.addLayer({
    id: 'selected-track', type: 'line', source: 'selected', filter: ['==', ['geometry-type'], 'LineString'],
    layout: { 'line-join': 'round', 'line-cap': 'round' },
    paint: { 'line-color': '#111827', 'line-width': 2.5, 'line-opacity': 0.75 },
  });
  map.addLayer({
    id: 'trucks', type: 'circle', source: 'trucks',
    paint: {
      'circle-radius': ['interpolate', ['linear'], ['zoom'], 9, 3, 12, 4.5, 16, 8],
      'circle-color': colour,
      'circle-opacity': ['case', offline, 0, 0.9],
      'circle-stroke-color': STATE_COLOURS.offline,
      'circle-stroke-width': ['case', offline, 1.2, 0],
    },
  });
  // in violation: drawn on top, larger
  map.addLayer({
    id: 'trucks-violation', type: 'circle', source: 'trucks',
    paint: {
      'circle-radius': ['interpolate', ['linear'], ['zoom'], 9, 4.5, 13, 7, 16, 10],
      'circle-color': STATE_COLOURS.violation,
      'circle-stroke-color': '#ffffff',
      'circle-stroke-width': 1,
    },
  });
  map.addLayer({
    id: 'selected-ring', type: 'circle', source: 'selected', filter: ['==', ['geometry-type'], 'Point'],
    paint: {
      'circle-radius': 12, 'circle-color': 'rgba(0,0,0,0)',
      'circle-stroke-color': '#111827', 'circle-stroke-width': 2.5,
    },
  });
}

function legend() {
  const swatch = (colour, hollow) => el('span', {
    class: `swatch dot${hollow ? ' hollow' : ''}`, style: `--c:${colour}`,
  });
  const area = colour => el('span', { class: 'swatch area', style: `--c:${colour}` });
  return el('div', { class: 'legend' },
    el('h4', { 'data-i18n': 'legend.trucks' }, t('legend.trucks')),
    ...STATES.map(s => el('div', {}, swatch(STATE_COLOURS[s], s === 'offline'),
      el('span', { 'data-i18n': `state.${s}` }, t(`state.${s}`)))),
    el('h4', { 'data-i18n': 'legend.areas' }, t('legend.areas')),
    ...Object.entries(KIND_COLOURS).map(([kind, colour]) => el('div', {}, area(colour),
      el('span', { 'data-i18n': `kind.${kind}` }, t(`kind.${kind}`)))));
}

export async function mount(root, ctx) {
  root.append(fromTemplate('tpl-live'));
  const $ = sel => root.querySelector(sel);
  const filters = { company: $('#filter-company'), district: $('#filter-district'), state: $('#filter-state') };
  const panel = $('#truck-panel');
  const fleet = new Fleet({
    offlineAfterS: ctx.config.offline_after_s, stoppedBelowKmh: ctx.config.stopped_below_kmh,
  });
  const abort = new AbortController();
  let selected = null;   // {plate, vehicle (from /v1/live/vehicles), track: [[lon, lat], …]}
  let pushing = false;
  let drawn = false;     // the first picture goes in whole (setData), the rest as diffs
  $('#live-status').textContent = t('live.connecting');

  function fillFilters() {
    const keep = Object.fromEntries(Object.entries(filters).map(([k, s]) => [k, s.value]));
    options(filters.company, [['', t('all')], ...ctx.config.companies.map(c => [c.id, c.name])], keep.company);
    options(filters.district, [['', t('all')], ...ctx.config.districts.map(d => [d.id, d.name])], keep.district);
    options(filters.state, [['all', t('all')], ...STATES.map(s => [s, t(`state.${s}`)])], keep.state || 'all');
  }
  fillFilters();

  const map = await createCityMap($('#map'), { layers: await ctx.mapLayers(), bbox: ctx.config.bbox });
  truckLayers(map);
  $('.map-wrap').append(legend());

  function matches(shown) {
    const { company, district, state } = filters;
    return (!company.value || shown.company_id === company.value)
      && (!district.value || shown.district_id === district.value)
      && (state.value === 'all' || shown.state === state.value);
  }

  function applyFilters() {
    const conditions = ['all'];
    if (filters.company.value) conditions.push(['==', ['get', 'company_id'], filters.company.value]);
    if (filters.district.value) conditions.push(['==', ['get', 'district_id'], filters.district.value]);
    if (filters.state.value !== 'all') conditions.push(['==', ['get', 'state'], filters.state.value]);
    const violation = ['==', ['get', 'state'], 'violation'];
    map.setFilter('trucks', ['all', conditions, ['!', violation]]);
    map.setFilter('trucks-violation', ['all', conditions, violation]);
    showCount();
  }
  for (const select of Object.values(filters)) select.addEventListener('change', applyFilters);
  applyFilters();

  function shownTrucks() {
    const out = [];
    for (const truck of fleet.trucks.values()) if (truck.shown && matches(truck.shown)) out.push(truck);
    return out;
  }

  function showCount() {
    $('#live-count').textContent = shownTrucks().length.toLocaleString();
    $('#live-updated').textContent = fleet.serverNow ? fmtTime(fleet.serverNow) : '–';
  }

  // The shown copy is what the map draws: trucks(), the count and clicks agree with the screen.
  function shownOf(truck, state) {
    return { lon: truck.lon, lat: truck.lat, ts: truck.ts, state,
      company_id: truck.company_id, district_id: truck.district_id };
  }

  function feature(truck, shown) {
    return { type: 'Feature', id: truck.id, geometry: { type: 'Point', coordinates: [shown.lon, shown.lat] },
      properties: { plate: truck.plate, company_id: shown.company_id,
        district_id: shown.district_id, state: shown.state } };
  }

  let lastPush = 0;

  async function flush() {
    if (pushing || !fleet.columns) return;
    if (drawn && map.isMoving() && performance.now() - lastPush < MOVING_DEFER_MS) return;
    lastPush = performance.now();
    const now = fleet.now();
    const source = map.getSource('trucks');
    const diff = { remove: fleet.removed.splice(0), add: [], update: [] };
    for (const truck of fleet.trucks.values()) {
      const state = fleet.stateOf(truck, now);
      const before = truck.shown;
      if (before && !truck.dirty && before.state === state) continue;
      const after = shownOf(truck, state);
      truck.shown = after;
      truck.dirty = false;
      if (!before) {
        diff.add.push(feature(truck, after));
        continue;
      }
      const change = { id: truck.id };
      if (before.lon !== after.lon || before.lat !== after.lat) {
        change.newGeometry = { type: 'Point', coordinates: [after.lon, after.lat] };
      }
      const props = ['state', 'company_id', 'district_id']
        .filter(key => before[key] !== after[key]).map(key => ({ key, value: after[key] }));
      if (props.length) change.addOrUpdateProperties = props;
      if (change.newGeometry || props.length) diff.update.push(change);
    }
    pushing = true;
    try {
      if (!drawn) {
        await source.setData({ type: 'FeatureCollection', features: diff.add });
        drawn = true;
      } else if (diff.remove.length || diff.add.length || diff.update.length) {
        await source.updateData(diff);
      }
    } finally {
      pushing = false;
    }
    showCount();
    refreshSelected();
  }

  function onEvent(name, data) {
    if (name === 'snapshot') fleet.snapshot(data);
    else if (name === 'positions') fleet.positions(data);
    else if (name === 'violating') fleet.setViolating(data.violating);
    else if (name === 'offline') fleet.setOffline(data.offline);
  }

  function onStatus(status) {
    $('#live-status').textContent = status instanceof Error ? status.message
      : status === 'retry' ? t('live.reconnecting') : '';
    $('#live-status').classList.toggle('error', status !== 'open');
  }

  api.stream('/v1/live/stream', { onEvent, onStatus, signal: abort.signal });
  const timer = setInterval(flush, FLUSH_MS);
  map.on('moveend', flush);

  // --- the selected truck: panel, ring and its last hour of track ---------------------------

  function drawSelected() {
    const truck = selected && fleet.byPlate(selected.plate);
    const features = [];
    if (selected?.track.length > 1) {
      features.push({ type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: selected.track } });
    }
    if (truck?.shown) {
      features.push({ type: 'Feature', properties: {}, geometry: { type: 'Point', coordinates: [truck.shown.lon, truck.shown.lat] } });
    }
    map.getSource('selected').setData({ type: 'FeatureCollection', features });
  }

  function fillPanel() {
    if (!selected) return;
    const truck = fleet.byPlate(selected.plate);
    const vehicle = selected.vehicle;
    const position = truck || vehicle?.position || {};
    const state = truck?.shown?.state;
    const sensor = (name, value) => tv(`sensor.${name}`, value);
    setFields(panel, {
      plate: selected.plate,
      company: vehicle?.company_name || vehicle?.company_id || truck?.company_id,
      permit: vehicle ? (vehicle.permits.map(p => (p.state && p.state !== 'active' ? `${p.id} (${p.state})` : p.id)).join(', ') || t('none')) : '…',
      speed: position.speed_kmh === null || position.speed_kmh === undefined ? '–' : `${Math.round(position.speed_kmh)} km/h`,
      lid: sensor('lid', position.lid),
      lift: sensor('lift', position.lift),
      load: sensor('load', position.load),
      load_kg: position.load_kg === null || position.load_kg === undefined ? '–' : Math.round(position.load_kg).toLocaleString(),
      state: state ? t(`state.${state}`) : '–',
      ts: fmtTime(position.ts),
      violating: (fleet.violating[truck?.device_id] || vehicle?.violating || []).map(r => tv('rule', r)).join(', ') || t('none'),
    });
    panel.querySelector('[data-field=state]').dataset.value = state || '';
    const now = fleet.now();
    panel.querySelector('#truck-playback').href = `#/playback?plate=${encodeURIComponent(selected.plate)}`
      + `&since=${now - TRACK_MS}&until=${now}`;
  }

  // New fixes of the selected truck extend its drawn track.
  function refreshSelected() {
    if (!selected) return;
    const truck = fleet.byPlate(selected.plate);
    const last = selected.track.at(-1);
    if (truck?.shown && (!last || last[0] !== truck.shown.lon || last[1] !== truck.shown.lat)) {
      selected.track.push([truck.shown.lon, truck.shown.lat]);
    }
    drawSelected();
    fillPanel();
  }

  async function select(plate) {
    selected = { plate, vehicle: null, track: [] };
    panel.hidden = false;
    fillPanel();
    drawSelected();
    const mine = selected;
    const now = fleet.now();
    const [vehicle, track] = await Promise.allSettled([
      api.get(`/v1/live/vehicles/${encodeURIComponent(plate)}`),
      api.get(`/v1/vehicles/${encodeURIComponent(plate)}/track`, { since: now - TRACK_MS, until: now }),
    ]);
    if (selected !== mine) return;
    if (vehicle.status === 'fulfilled') selected.vehicle = vehicle.value;
    if (track.status === 'fulfilled') {
      const lon = track.value.columns.indexOf('lon');
      const lat = track.value.columns.indexOf('lat');
      selected.track = track.value.rows.map(r => [r[lon], r[lat]]);
    }
    const failed = [vehicle, track].find(r => r.status === 'rejected');
    $('#truck-error').textContent = failed ? failed.reason.message : '';
    refreshSelected();
  }

  function unselect() {
    selected = null;
    panel.hidden = true;
    drawSelected();
  }

  // Of the trucks under the pointer, the one nearest to it (violations first on a tie).
  map.on('click', event => {
    const { x, y } = event.point;
    const hits = map.queryRenderedFeatures([[x - 6, y - 6], [x + 6, y + 6]], { layers: ['trucks-violation', 'trucks'] });
    if (!hits.length) return;
    const distance = f => {
      const p = map.project(f.geometry.coordinates);
      return Math.hypot(p.x - x, p.y - y);
    };
    const best = hits.reduce((a, b) => (distance(b) < distance(a) ? b : a));
    select(best.properties.plate);
  });
  for (const layer of ['trucks', 'trucks-violation']) {
    map.on('mouseenter', layer, () => { map.getCanvas().style.cursor = 'pointer'; });
    map.on('mouseleave', layer, () => { map.getCanvas().style.cursor = ''; });
  }
  $('#truck-close').addEventListener('click', unselect);

  return {
    map,
    trucks: () => shownTrucks().map(truck => ({
      device_id: truck.device_id, plate: truck.plate, company_id: truck.company_id,
      lon: truck.shown.lon, lat: truck.shown.lat, ts: truck.shown.ts, state: truck.shown.state,
    })),
    truckScreenPoint(plate) {
      const truck = fleet.byPlate(plate);
      if (!truck?.shown) return null;
      const p = map.project([truck.shown.lon, truck.shown.lat]);
      const box = map.getContainer().getBoundingClientRect();
      return [box.left + p.x, box.top + p.y];
    },
    relabel() {
      fillFilters();
      showCount();
      fillPanel();
    },
    unmount() {
      abort.abort();
      clearInterval(timer);
      map.remove();
    },
  };
}
