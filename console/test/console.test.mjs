// The console's pure parts under node's own test runner (`npm test` in console/): the event
// stream parser, truck states, the city-time conversions of the datetime inputs, and the review
// page's photo captions and evidence seal badge.
import assert from 'node:assert/strict';
import { test } from 'node:test';

// i18n.js reads the browser's language and storage when loaded
Object.defineProperty(globalThis, 'navigator', { value: { language: 'en-US' }, configurable: true });
globalThis.localStorage = { getItem: () => null, setItem: () => {} };
globalThis.document = { documentElement: {} };

const { eventParser } = await import('../web/api.js');
const { Fleet } = await import('../web/livedata.js');
const i18n = await import('../web/i18n.js');

test('events split across chunks, comments ignored, multi-line data joined', () => {
  const seen = [];
  const feed = eventParser((name, data) => seen.push([name, data]));
  feed(': keepalive\n\nevent: snap');
  feed('shot\ndata: {"a":\r\ndata: 1}\n');
  assert.deepEqual(seen, []);
  feed('\nevent: positions\ndata: []\n\n');
  assert.deepEqual(seen, [['snapshot', '{"a":\n1}'], ['positions', '[]']]);
});

test('truck state: offline, then violation, then stopped, then loaded or empty', () => {
  const fleet = new Fleet({ offlineAfterS: 300, stoppedBelowKmh: 5 });
  const now = 1_800_000_000_000;
  const columns = ['device_id', 'plate', 'ts', 'speed_kmh', 'load'];
  fleet.snapshot({
    columns, now, violating: { v: ['OVERSPEED'] }, offline: ['o'],
    rows: [['o', 'A', now, 50, 2], ['old', 'B', now - 301_000, 50, 2], ['v', 'C', now, 50, 2],
      ['s', 'D', now, 4.9, 2], ['n', 'E', now, null, 0], ['l', 'F', now, 30, 1], ['e', 'G', now, 30, 0]],
  });
  const states = [...fleet.trucks.values()].map(t => [t.plate, fleet.stateOf(t, now)]);
  assert.deepEqual(states, [['A', 'offline'], ['B', 'offline'], ['C', 'violation'], ['D', 'stopped'],
    ['E', 'stopped'], ['F', 'moving_loaded'], ['G', 'moving_empty']]);
});

test('a new snapshot drops the trucks it no longer has and keeps the others\' ids', () => {
  const fleet = new Fleet({ offlineAfterS: 300, stoppedBelowKmh: 5 });
  const columns = ['device_id', 'plate', 'ts'];
  fleet.snapshot({ columns, rows: [['a', 'A', 1], ['b', 'B', 1]], now: 1 });
  const [idOfA, idOfB] = [fleet.trucks.get('a').id, fleet.trucks.get('b').id];
  fleet.snapshot({ columns, rows: [['a', 'A', 2]], now: 2 });
  assert.deepEqual([...fleet.trucks.keys()], ['a']);
  assert.equal(fleet.trucks.get('a').id, idOfA);
  assert.deepEqual(fleet.removed, [idOfB]);
  fleet.positions({ rows: [['c', 'C', 3]], now: 3 });
  assert.equal(fleet.byPlate('C').dirty, true);
});

test('datetime-local values are the city\'s wall clock, whatever the zone', () => {
  i18n.setTimeZone('Asia/Shanghai');
  const ms = Date.UTC(2026, 11, 3, 16, 30); // 00:30 on the 4th in Shanghai
  assert.equal(i18n.toInputValue(ms), '2026-12-04T00:30:00');
  assert.equal(i18n.fromInputValue('2026-12-04T00:30'), ms);
  assert.equal(i18n.fmtTime(ms), '2026-12-04 00:30:00');
  i18n.setTimeZone('Europe/Berlin'); // across a daylight-saving change
  const summer = Date.UTC(2026, 6, 1, 10, 0);
  assert.equal(i18n.toInputValue(summer), '2026-07-01T12:00:00');
  assert.equal(i18n.fromInputValue('2026-07-01T12:00'), summer);
  assert.equal(i18n.fromInputValue('nonsense'), null);
});

test('a photo\'s caption: its time in the city\'s zone and its camera channel, in either language', () => {
  i18n.setTimeZone('Asia/Shanghai');
  const photo = { id: 7, taken_at: '2026-12-03T16:30:05+00:00', channel: 2 };
  i18n.setLang('en');
  assert.equal(i18n.photoCaption(photo), '00:30:05 · camera 2');
  assert.equal(i18n.photoCaption(photo, { long: true }), '2026-12-04 00:30:05 · camera 2');
  i18n.setLang('zh');
  assert.equal(i18n.photoCaption(photo), '00:30:05 · 通道 2');
  assert.equal(i18n.photoCaption({ ...photo, channel: 0 }), '00:30:05 · 通道 0');
  assert.equal(i18n.photoCaption({ ...photo, channel: null }), '00:30:05');
  assert.equal(i18n.photoCaption({ taken_at: null }), '–');
  i18n.setLang('en');
});

test('the seal badge: sealed while the bundle matches, tampered when not, else not sealed', () => {
  const seal = { seq: 3, seal: 'ab', sealed_by: 'officer', sealed_at: '2026-12-04T01:00:00+00:00',
    items_ok: true, hash_ok: true, link_ok: true, problems: [] };
  assert.equal(i18n.sealState({ ok: true, seal }), 'sealed');
  assert.equal(i18n.sealState({ ok: false, seal, first_difference: { kind: 'fix' } }), 'tampered');
  assert.equal(i18n.sealState({ ok: false, seal: { ...seal, hash_ok: false } }), 'tampered');
  assert.equal(i18n.sealState({ ok: 'yes', seal }), 'tampered'); // only a real true passes
  assert.equal(i18n.sealState(null), 'unsealed'); // the bundle's seal is null: not sealed yet
  assert.equal(i18n.sealState({ ok: false, seal: null }), 'unsealed');
  i18n.setLang('en');
  assert.deepEqual(['sealed', 'unsealed', 'tampered'].map(s => i18n.t(`seal.${s}`)),
    ['sealed ✓', 'not sealed', 'tampered ✗']);
  i18n.setLang('zh');
  assert.deepEqual(['sealed', 'unsealed', 'tampered'].map(s => i18n.t(`seal.${s}`)),
    ['已封存 ✓', '未封存', '已被篡改 ✗']);
  i18n.setLang('en');
});
