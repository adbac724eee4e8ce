// The review queue (#/review) and one violation under review (#/review/<id>): its evidence track
// on the map, the sensor timeline underneath, the photos its truck's camera took, the evidence
// seal, and confirm / dismiss with a reason.
import * as api from './api.js';
import { el, fillTable, fromTemplate, options, setFields } from './dom.js';
import { fmtTime, lang, photoCaption, sealState, t, tv } from './i18n.js';
import { createCityMap, fitPoints, labelMarker, maplibregl } from './mapstyle.js';
import { sensorTimeline } from './timeline.js';

const QUEUE_REFRESH_MS = 20_000;
const FILTER_KEY = 'muckwatch.queue';
const PERMIT_COLOUR = '#7c3aed'; // the permit's own corridor, stronger than the others'
const PHOTO_FETCHES = 4; // photos fetched at once for the strip
// a camera, for the map markers of photos (static markup: no data goes into it)
const CAMERA_ICON = '<svg viewBox="0 0 16 16" width="12" height="12" aria-hidden="true">'
  + '<path fill="currentColor" d="M5.5 2 4.3 3.5H2.5A1.5 1.5 0 0 0 1 5v7a1.5 1.5 0 0 0 1.5 1.5h11A1.5'
  + ' 1.5 0 0 0 15 12V5a1.5 1.5 0 0 0-1.5-1.5h-1.8L10.5 2zM8 5.5a3 3 0 1 1 0 6 3 3 0 0 1 0-6z"/></svg>';

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

// The violation's photos: a strip of thumbnails under the timeline (time and camera channel),
// a camera marker on the map where one was taken, a click opens it large (Esc closes, the
// arrow keys step). The bytes need the bearer token, so each photo is fetched once as a Blob
// and shown through an object URL; destroy() aborts what is still loading and revokes them.
function photoStrip(view, violationId) {
  const controller = new AbortController();
  const { signal } = controller;
  const urls = new Map(); // photo id → Promise<object URL | null>
  const made = [];
  let photos = [];
  let thumbs = [];
  let map = null;
  let markers = [];
  let shown = null; // the index of the photo open large
  let returnFocus = null; // what had the focus before it opened

  const title = el('span', { class: 'photo-strip-title' });
  const strip = el('div', { class: 'photo-strip', hidden: true });
  view.querySelector('.review-main').append(strip);
  const big = el('img', { alt: '' });
  const bigCaption = el('span', { class: 'caption' });
  const previous = el('button', { type: 'button', onclick: () => step(-1) });
  const next = el('button', { type: 'button', onclick: () => step(1) });
  const close = el('button', { type: 'button', onclick: () => hide() });
  const overlay = el('div', { class: 'photo-overlay', role: 'dialog', 'aria-modal': 'true', hidden: true,
    onclick: event => { if (event.target === overlay) hide(); } },
    el('figure', {}, big, el('figcaption', {}, previous, bigCaption, next, close)));
  view.append(overlay);

  function load(photo) {
    if (!urls.has(photo.id)) {
      urls.set(photo.id, api.getBlob(photo.url || `/v1/media/${encodeURIComponent(photo.id)}`, { signal })
        .then(blob => {
          if (signal.aborted) return null;
          const url = URL.createObjectURL(blob);
          made.push(url);
          return url;
        })
        .catch(() => null)); // gone from the store (410), aborted: the thumbnail says so
    }
    return urls.get(photo.id);
  }

  function show(index) {
    const photo = photos[index];
    if (!photo) return;
    if (shown === null) returnFocus = document.activeElement;
    shown = index;
    overlay.hidden = false;
    big.removeAttribute('src');
    big.alt = photoCaption(photo, { long: true });
    bigCaption.textContent = `${photoCaption(photo, { long: true })} (${index + 1} / ${photos.length})`;
    previous.disabled = index === 0;
    next.disabled = index === photos.length - 1;
    close.focus();
    load(photo).then(url => {
      if (shown !== index) return;
      if (url) big.src = url;
      else bigCaption.textContent += ` — ${t('photo.missing')}`;
    });
  }

  function step(by) {
    if (shown === null) return;
    const index = shown + by;
    if (index >= 0 && index < photos.length) show(index);
  }

  function hide() {
    overlay.hidden = true;
    shown = null;
    big.removeAttribute('src');
    returnFocus?.focus?.();
    returnFocus = null;
  }

  function onKey(event) {
    if (shown === null) return;
    if (event.key === 'Escape') hide();
    else if (event.key === 'ArrowLeft') step(-1);
    else if (event.key === 'ArrowRight') step(1);
    else return;
    event.preventDefault();
  }
  document.addEventListener('keydown', onKey);

  function labels() {
    title.replaceChildren(t('photo.title'), el('b', {}, String(photos.length)));
    for (const { photo, frame, caption, button } of thumbs) {
      caption.textContent = photoCaption(photo);
      button.title = photoCaption(photo, { long: true });
      if (frame.classList.contains('missing')) frame.textContent = t('photo.missing');
    }
    previous.textContent = `‹ ${t('photo.previous')}`;
    next.textContent = `${t('photo.next')} ›`;
    close.textContent = t('close');
    if (shown !== null) show(shown);
    for (const { photo, marker } of markers) marker.getElement().title = photoCaption(photo, { long: true });
  }

  function drawMarkers() {
    markers.forEach(m => m.marker.remove());
    markers = [];
    if (!map) return;
    photos.forEach((photo, index) => {
      if (!Number.isFinite(photo.lon) || !Number.isFinite(photo.lat)) return;
      const element = el('div', { class: 'marker photo', dataset: { mediaId: photo.id },
        onclick: event => { event.stopPropagation(); show(index); } });
      element.innerHTML = CAMERA_ICON;
      markers.push({ photo, marker: new maplibregl.Marker({ element }).setLngLat([photo.lon, photo.lat]).addTo(map) });
    });
  }

  async function fill() {
    let answer;
    try {
      answer = await api.get(`/v1/violations/${encodeURIComponent(violationId)}/media`, null, { signal });
    } catch {
      return; // no photos to show (403 / 404 / offline): the strip stays hidden
    }
    if (signal.aborted || !Array.isArray(answer) || !answer.length) return;
    photos = answer;
    thumbs = photos.map((photo, index) => {
      const frame = el('span', { class: 'frame loading' });
      const caption = el('span', { class: 'caption' });
      const button = el('button', { type: 'button', class: 'photo-thumb', dataset: { mediaId: photo.id },
        onclick: () => show(index) }, frame, caption);
      return { photo, frame, caption, button };
    });
    strip.replaceChildren(title, ...thumbs.map(th => th.button));
    strip.hidden = false;
    labels();
    drawMarkers();
    let at = 0;
    const worker = async () => {
      while (at < thumbs.length && !signal.aborted) {
        const { photo, frame } = thumbs[at++];
        const url = await load(photo);
        frame.classList.remove('loading');
        if (url) frame.replaceChildren(el('img', { src: url, alt: '' }));
        else {
          frame.classList.add('missing');
          frame.textContent = t('photo.missing');
        }
      }
    };
    await Promise.all(Array.from({ length: PHOTO_FETCHES }, worker));
  }
  fill().catch(() => {});

  return {
    setMap(value) {
      map = value;
      drawMarkers();
    },
    relabel: labels,
    destroy() {
      controller.abort();
      document.removeEventListener('keydown', onKey);
      markers.forEach(m => m.marker.remove());
      overlay.remove();
      made.forEach(url => URL.revokeObjectURL(url));
      made.length = 0;
      urls.clear();
    },
  };
}

// The evidence seal as a badge among the violation's fields: sealed ✓, not sealed, tampered ✗.
// GET …/evidence/verify answers 409 before a seal exists, and the browser logs every 4xx as
// an error, so the bundle (seal: null until sealed) is asked first and verify only when sealed.
// Anything else (403, 404, offline) hides the badge.
function sealBadge(detail, violationId) {
  const controller = new AbortController();
  const path = `/v1/violations/${encodeURIComponent(violationId)}/evidence`;
  const badge = el('span', { class: 'seal-badge' });
  const label = el('dt', { 'data-i18n': 'seal.title', hidden: true }, t('seal.title'));
  const value = el('dd', { hidden: true }, badge);
  detail.append(label, value);
  let answer; // undefined: not known; null: no seal; else verify's answer
  let asked = 0;

  function render() {
    const known = answer !== undefined;
    label.hidden = value.hidden = !known;
    if (!known) return;
    const state = sealState(answer);
    badge.dataset.state = state;
    badge.textContent = t(`seal.${state}`);
    const seal = answer?.seal;
    badge.title = state === 'sealed' ? `${t('seal.at')} ${fmtTime(seal.sealed_at)} · ${seal.sealed_by}`
      : state === 'tampered' ? (answer.first_difference?.detail || (seal.problems || []).join('; '))
        : '';
  }

  async function check() {
    const mine = ++asked;
    const { signal } = controller;
    let found;
    try {
      const bundle = await api.get(path, null, { signal });
      found = bundle.seal ? await api.get(`${path}/verify`, null, { signal }) : null;
    } catch {
      found = undefined;
    }
    if (mine !== asked || signal.aborted) return;
    answer = found;
    render();
  }

  check().catch(() => {});
  return {
    check() { check().catch(() => {}); },
    relabel: render,
    destroy() { controller.abort(); },
  };
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
  const photos = photoStrip(root.querySelector('.view-review'), violation.id);
  const seal = sealBadge($('#violation-detail'), violation.id);

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
      seal.check(); // a decision seals what it rested on once the violation's window is complete
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
  photos.setMap(map);
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
      photos.relabel();
      seal.relabel();
    },
    unmount() {
      photos.destroy();
      seal.destroy();
      timeline?.destroy();
      map.remove();
    },
  };
}
