// The review queue (#/review) and one violation under review (#/review/<id>): its evidence track
// on the map, the sensor timeline underneath, and confirm / dismiss with a reason.
import * as api from './api.js';
import { el, fillTable, fromTemplate, options, setFields } from './dom.js';
import { fmtTime, lang, t, tv } from './i18n.js';
import { createCityMap, fitPoints, labelMarker } from './mapstyle.js';
import { sensorTimeline } from './timeline.js';

const QUEUE_REFRESH_MS = 20_000;
const FILTER_KEY = 'muckwatch.queue';
const PERMIT_COLOUR = '#7c3aed'; // the permit's own corridor, stronger than the others'

export function mount(root, ctx) {
  return ctx.arg ? mountViolation(root, ctx, ctx.arg) : mountQueue(root, ctx);
}

function districtName(ctx, id) {
  return ctx.config.districts.find(d => d.id === id)?.name || id || '–';
}

async function mountQueue(root, ctx) {
  root.append(fromTemplate('tpl-queue'));
  const $ = sel => root.querySelector(sel);
  const district = $('#queue-district');
  const severity = $('#queue-severity');
  const saved = JSON.parse(sessionStorage.getItem(FILTER_KEY) || '{}');
  // an officer's queue holds only their districts: offer those
  const districts = ctx.me.districts.length
    ? ctx.config.districts.filter(d => ctx.me.districts.includes(d.id)) : ctx.config.districts;
  let answer = null;

  function fillFilters() {
    options(district, [['', t('all')], ...districts.map(d => [d.id, d.name])], district.value || saved.district || '');
    options(severity, [['1', '≥ 1'], ['2', '≥ 2'], ['3', '3']], severity.value || saved.min_severity || '1');
  }

  function render() {
    if (!answer) return;
    fillTable($('#queue'), [
      { label: 'field.rule', value: v => tv('rule', v.rule) },
      { label: 'field.plate', value: v => v.plate },
      { label: 'field.district', value: v => districtName(ctx, v.district_id) },
      { label: 'field.severity', value: v => el('span', { class: `severity-${v.severity}` }, String(v.severity)), class: 'num' },
      { label: 'field.start', value: v => fmtTime(v.start_ts) },
      { label: 'field.vstate', value: v => tv('vstate', v.state) },
    ], answer.violations, v => ({ dataset: { violationId: v.id } }), 'queue.empty');
    // counts: one row per district, one column per severity
    const byDistrict = new Map();
    for (const c of answer.counts) {
      const row = byDistrict.get(c.district_id) || { district_id: c.district_id, 1: 0, 2: 0, 3: 0 };
      row[c.severity] = c.violations;
      byDistrict.set(c.district_id, row);
    }
    const sev = n => ({ title: `${t('queue.sev')} ${n}`, value: r => String(r[n]), class: `num severity-${n}` });
    fillTable($('#queue-counts'), [
      { label: 'field.district', value: r => districtName(ctx, r.district_id) },
      sev(3), sev(2), sev(1),
      { label: 'queue.total', value: r => String(r[1] + r[2] + r[3]), class: 'num' },
    ], [...byDistrict.values()]);
  }

  async function load() {
    sessionStorage.setItem(FILTER_KEY, JSON.stringify({ district: district.value, min_severity: severity.value }));
    try {
      answer = await api.get('/v1/review/queue', { district: district.value, min_severity: severity.value, limit: 500 });
      $('#queue-error').textContent = '';
      render();
    } catch (err) {
      $('#queue-error').textContent = err.message;
    }
  }

  fillFilters();
  district.addEventListener('change', load);
  severity.addEventListener('change', load);
  $('#queue').addEventListener('click', event => {
    const row = event.target.closest('tr[data-violation-id]');
    if (row) location.hash = `#/review/${encodeURIComponent(row.dataset.violationId)}`;
  });
  await load();
  const timer = setInterval(load, QUEUE_REFRESH_MS);
  return {
    relabel() { fillFilters(); render(); },
    unmount() { clearInterval(timer); },
  };
}

function evidenceLayers(map, violation) {
  const { track, marks, corridor } = violation;
  const [ts, lon, lat] = ['ts', 'lon', 'lat'].map(c => track.columns.indexOf(c));
  const line = rows => ({ type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: rows.map(r => [r[lon], r[lat]]) } });
  const endTs = marks.end?.ts ?? Infinity;
  const during = track.rows.filter(r => r[ts] >= marks.start.ts && r[ts] <= endTs);
  // only this permit's corridor: the others in force would bury it
  for (const id of ['corridor-fill', 'corridor-line']) map.setLayoutProperty(id, 'visibility', 'none');
  map.addSource('corridor', { type: 'geojson', data: corridor || { type: 'FeatureCollection', features: [] } });
  map.addLayer({ id: 'permit-corridor', type: 'fill', source: 'corridor', filter: ['==', ['geometry-type'], 'Polygon'],
    paint: { 'fill-color': PERMIT_COLOUR, 'fill-opacity': 0.15 } });
  map.addLayer({ id: 'permit-corridor-line', type: 'line', source: 'corridor', filter: ['==', ['geometry-type'], 'Polygon'],
    paint: { 'line-color': PERMIT_COLOUR, 'line-width': 1 } });
  map.addLayer({ id: 'permit-route', type: 'line', source: 'corridor', filter: ['==', ['geometry-type'], 'LineString'],
    paint: { 'line-color': PERMIT_COLOUR, 'line-width': 1.5, 'line-dasharray': [3, 2] } });
  map.addSource('evidence', { type: 'geojson', data: { type: 'FeatureCollection', features: [line(track.rows)] } });
  map.addSource('evidence-during', { type: 'geojson', data: { type: 'FeatureCollection', features: during.length > 1 ? [line(during)] : [] } });
  map.addLayer({ id: 'evidence', type: 'line', source: 'evidence', layout: { 'line-join': 'round', 'line-cap': 'round' },
    paint: { 'line-color': '#374151', 'line-width': 3 } });
  map.addLayer({ id: 'evidence-during', type: 'line', source: 'evidence-during', layout: { 'line-join': 'round', 'line-cap': 'round' },
    paint: { 'line-color': '#dc2626', 'line-width': 4 } });
  map.addLayer({ id: 'evidence-fixes', type: 'circle', source: 'evidence', minzoom: 14,
    paint: { 'circle-radius': 2, 'circle-color': '#374151' } });
  const points = track.rows.map(r => [r[lon], r[lat]]);
  fitPoints(map, points.length ? points : [[marks.start.lon, marks.start.lat]]);
}

// The peak as the rule measured it (the violation's peak), and where on the track: the
// mark's value and unit when the track shows one (fastest fix, farthest from the route …).
function peakText(v) {
  const mark = v.marks?.peak;
  if (mark?.value != null) return `${mark.value} ${mark.label}`;
  return v.peak ?? '–';
}

// Start, peak and end as labelled markers (HTML: the style has no glyphs for text).
function placeMarks(map, marks) {
  return ['start', 'peak', 'end'].filter(name => marks[name]).map(name =>
    labelMarker(name, t(`mark.${name}`)).setLngLat([marks[name].lon, marks[name].lat]).addTo(map));
}

async function mountViolation(root, ctx, id) {
  root.append(fromTemplate('tpl-review'));
  const $ = sel => root.querySelector(sel);
  const select = $('#review-reason');
  const result = $('#review-result');
  let [violation, reasons] = await Promise.all([
    api.get(`/v1/console/violations/${encodeURIComponent(id)}`),
    api.get('/v1/reasons'),
  ]);
  reasons = reasons.filter(r => r.officer);
  let decision = null; // the decision whose reasons the select offers; null: both
  let timeline = null;

  function fillDetail() {
    const v = violation;
    $('[data-field=rule]').textContent = tv('rule', v.rule);
    setFields($('#violation-detail'), {
      id: v.id, plate: v.plate, company: v.company_id, permit: v.permit_id,
      district: districtName(ctx, v.district_id), severity: v.severity, state: tv('vstate', v.state),
      start: fmtTime(v.start_ts), end: fmtTime(v.end_ts),
      peak: peakText(v),
      review: tv('review', v.review),
      review_reason: reasonLabel(v.review_reason), reviewed_by: v.reviewed_by,
    });
  }

  function reasonLabel(code) {
    const reason = reasons.find(r => r.code === code);
    return reason ? (lang() === 'zh' ? reason.label_zh : reason.label_en) : code;
  }

  function fillReasons() {
    const keep = select.value;
    const group = d => el('optgroup', { label: t(`review.reasons_${d}`) },
      ...reasons.filter(r => r.decision === d).map(r => el('option', { value: r.code }, reasonLabel(r.code))));
    select.replaceChildren(el('option', { value: '' }, t('review.pick_reason')),
      ...(decision ? [group(decision)] : [group('confirm'), group('dismiss')]));
    select.value = [...select.options].some(o => o.value === keep) ? keep : '';
    showChosen();
  }

  // The button matching the chosen reason stands out.
  function showChosen() {
    const chosen = reasons.find(r => r.code === select.value)?.decision || decision;
    $('#review-confirm').classList.toggle('chosen', chosen === 'confirm');
    $('#review-dismiss').classList.toggle('chosen', chosen === 'dismiss');
  }

  function showReviewed() {
    const done = violation.review !== 'new';
    for (const control of [select, $('#review-note'), $('#review-confirm'), $('#review-dismiss')]) control.disabled = done;
    if (done) {
      result.className = 'done';
      result.dataset.state = violation.review;
      result.textContent = lang() === 'zh' ? `${tv('review', violation.review)} (${violation.review})` : violation.review;
    }
  }

  // A press with a reason of that decision sends it; otherwise it narrows the reasons to the
  // decision and asks for one (then a second press sends).
  async function decide(choice) {
    const reason = reasons.find(r => r.code === select.value);
    if (!reason || reason.decision !== choice) {
      decision = choice;
      fillReasons();
      result.className = 'hint';
      result.textContent = t('review.need_reason');
      select.focus();
      return;
    }
    result.className = '';
    result.textContent = t('review.sending');
    try {
      const after = await api.post(`/v1/violations/${encodeURIComponent(violation.id)}/review`,
        { decision: choice, reason: reason.code, note: $('#review-note').value.trim() || null });
      violation = { ...violation, ...after };
      fillDetail();
      showReviewed();
    } catch (err) {
      result.className = 'error';
      result.textContent = err.message;
    }
  }

  fillDetail();
  fillReasons();
  showReviewed();
  select.addEventListener('change', showChosen);
  $('#review-confirm').addEventListener('click', () => decide('confirm'));
  $('#review-dismiss').addEventListener('click', () => decide('dismiss'));

  const map = await createCityMap($('#violation-map'), { layers: await ctx.mapLayers(), bbox: ctx.config.bbox });
  evidenceLayers(map, violation);
  let markers = placeMarks(map, violation.marks);
  const drawTimeline = () => {
    timeline?.destroy();
    timeline = sensorTimeline($('#sensor-timeline'), violation.track, violation.marks);
  };
  drawTimeline();

  return {
    map,
    relabel() {
      fillDetail();
      fillReasons();
      showReviewed();
      drawTimeline();
      markers.forEach(m => m.remove());
      markers = placeMarks(map, violation.marks);
    },
    unmount() {
      timeline?.destroy();
      map.remove();
    },
  };
}
