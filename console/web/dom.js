// Small DOM helpers shared by the views.
import { t, translate } from './i18n.js';

// el('td', {class: 'num', dataset: {x: 1}}, 'text', node) → element
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  node.append(...children.filter(c => c !== null && c !== undefined));
  return node;
}

// A copy of <template id=…>'s content, its labels translated.
export function fromTemplate(id) {
  const fragment = document.getElementById(id).content.cloneNode(true);
  translate(fragment);
  return fragment;
}

// Fills a <table>'s thead and tbody: columns are [{label: i18n key (or title: text), value:
// row → text | Node, class?}]; rowAttrs(row) gives the <tr>'s attributes; empty is the i18n key
// shown when there are no rows.
export function fillTable(table, columns, rows, rowAttrs = () => ({}), empty = 'table.empty') {
  table.replaceChildren(
    el('thead', {}, el('tr', {}, ...columns.map(c => el('th', { class: c.class }, c.title ?? t(c.label))))),
    el('tbody', {}, ...rows.map(row => el('tr', rowAttrs(row),
      ...columns.map(c => el('td', { class: c.class }, c.value(row) ?? '–'))))),
  );
  if (!rows.length) {
    table.tBodies[0].append(el('tr', { class: 'empty' },
      el('td', { colspan: columns.length }, t(empty))));
  }
}

// Sets the text of every [data-field=name] under root from values[name].
export function setFields(root, values) {
  for (const [name, value] of Object.entries(values)) {
    const node = root.querySelector(`[data-field="${name}"]`);
    if (node) node.textContent = value ?? '–';
  }
}

export function options(select, items, selected) {
  select.replaceChildren(...items.map(([value, label]) => el('option', { value }, label)));
  if (selected !== undefined) select.value = selected;
}
