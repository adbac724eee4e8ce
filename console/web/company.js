// The company's own page: its credit score, grade and rank, its vehicles, violations and appeals.
import * as api from './api.js';
import { el, fillTable, fromTemplate } from './dom.js';
import { fmtTime, tv } from './i18n.js';

export async function mount(root, ctx) {
  root.append(fromTemplate('tpl-company'));
  const $ = sel => root.querySelector(sel);
  const company = ctx.me.company;
  const settled = await Promise.allSettled([
    api.get('/v1/public/grades'),
    api.get('/v1/registry/vehicles', { company, limit: 5000 }),
    api.get('/v1/violations', { limit: 500 }),
    api.get('/v1/appeals', { limit: 500 }),
  ]);
  const [grades, vehicles, violations, appeals] = settled.map(r => (r.status === 'fulfilled' ? r.value : []));
  $('#company-error').textContent = settled.filter(r => r.status === 'rejected').map(r => r.reason.message).join('; ');
  const mine = grades.find(g => g.company_id === company);
  const playback = plate => el('a', { href: `#/playback?plate=${encodeURIComponent(plate)}` }, plate);

  function render() {
    $('[data-field=company-name]').textContent = mine?.name || ctx.config.companies.find(c => c.id === company)?.name || company;
    $('#company-score').textContent = mine ? String(mine.score) : '–';
    $('#company-grade').textContent = mine?.grade ?? '–';
    $('#company-rank').textContent = mine ? `${mine.rank} / ${grades.length}` : '–';
    fillTable($('#company-vehicles'), [
      { label: 'field.plate', value: v => (ctx.me.permissions.includes('track.read') ? playback(v.plate) : v.plate) },
      { label: 'field.type', value: v => v.vehicle_type },
      { label: 'field.rated_load', value: v => v.rated_load_kg?.toLocaleString(), class: 'num' },
      { label: 'field.volume', value: v => v.volume_m3?.toLocaleString(), class: 'num' },
      { label: 'field.inspection', value: v => v.inspection_expires }, // a calendar date already
    ], vehicles);
    fillTable($('#company-violations'), [
      { label: 'field.rule', value: v => tv('rule', v.rule) },
      { label: 'field.plate', value: v => v.plate },
      { label: 'field.start', value: v => fmtTime(v.start_ts) },
      { label: 'field.review', value: v => tv('review', v.review) },
    ], violations, v => ({ dataset: { violationId: v.id } }));
    fillTable($('#company-appeals'), [
      { label: 'field.violation', value: a => a.violation_id },
      { label: 'field.rule', value: a => tv('rule', a.rule) },
      { label: 'field.filed_at', value: a => fmtTime(a.filed_at) },
      { label: 'field.appeal_state', value: a => tv('appeal', a.state) },
      { label: 'field.decision_note', value: a => a.decision_note },
    ], appeals);
  }

  render();
  return { relabel: render, unmount() {} };
}
