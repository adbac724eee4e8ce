// What everyone may see, without logging in: company credit grades and the permits valid now.
import * as api from './api.js';
import { fillTable, fromTemplate } from './dom.js';
import { fmtDate } from './i18n.js';

export async function mount(root) {
  root.append(fromTemplate('tpl-public'));
  const $ = sel => root.querySelector(sel);
  const settled = await Promise.allSettled([api.get('/v1/public/grades'), api.get('/v1/public/permits', { limit: 5000 })]);
  const [grades, permits] = settled.map(r => (r.status === 'fulfilled' ? r.value : []));
  $('#public-error').textContent = settled.filter(r => r.status === 'rejected').map(r => r.reason.message).join('; ');

  function render() {
    fillTable($('#public-grades'), [
      { label: 'field.company', value: g => g.name || g.company_id },
      { label: 'field.score', value: g => String(g.score), class: 'num' },
      { label: 'field.grade', value: g => g.grade },
      { label: 'field.rank', value: g => String(g.rank), class: 'num' },
    ], grades);
    fillTable($('#public-permits'), [
      { label: 'field.permit', value: p => p.id },
      { label: 'field.plate', value: p => p.plate },
      { label: 'field.company', value: p => p.company_name || p.company_id },
      { label: 'field.origin', value: p => p.origin_name || p.origin },
      { label: 'field.destinations', value: p => (p.destination_names || p.destinations || []).join('、') },
      { label: 'field.valid_from', value: p => fmtDate(p.valid_from) },
      { label: 'field.valid_to', value: p => fmtDate(p.valid_to) },
    ], permits);
  }

  render();
  return { relabel: render, unmount() {} };
}
