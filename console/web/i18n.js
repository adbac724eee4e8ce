// Every visible label in Chinese and English, and times in the city's time zone.

const LANG_KEY = 'muckwatch.lang';

// key: [zh, en]
const LABELS = {
  title: ['渣土车监管', 'muckwatch console'],
  'nav.live': ['实时监控', 'Live map'],
  'nav.review': ['违规审核', 'Review'],
  'nav.playback': ['轨迹回放', 'Playback'],
  'nav.company': ['企业', 'Company'],
  'nav.public': ['公示', 'Public'],
  lang: ['English', '中文'],
  logout: ['退出', 'Log out'],
  'login.token': ['访问令牌', 'Access token'],
  'login.submit': ['登录', 'Log in'],
  'login.failed': ['登录失败', 'Login failed'],
  anonymous: ['访客', 'visitor'],
  'need.login': ['此页面需要登录，或您的角色无权访问。', 'This page needs a login, or your role may not use it.'],
  'not.found': ['没有这个页面。', 'No such page.'],
  loading: ['加载中…', 'Loading…'],
  none: ['无', 'none'],
  all: ['全部', 'all'],
  close: ['关闭', 'Close'],
  'table.empty': ['没有记录。', 'Nothing recorded.'],

  'role.officer': ['执法人员', 'officer'],
  'role.supervisor': ['主管', 'supervisor'],
  'role.analyst': ['分析员', 'analyst'],
  'role.company': ['运输企业', 'company'],
  'role.association': ['行业协会', 'association'],
  'role.site_operator': ['场站运营', 'site operator'],
  'role.public': ['公众', 'public'],

  'filter.company': ['企业', 'Company'],
  'filter.district': ['辖区', 'District'],
  'filter.state': ['状态', 'State'],
  'live.count': ['显示车辆', 'Trucks shown'],
  'live.updated': ['更新于', 'Updated'],
  'live.connecting': ['连接中…', 'connecting…'],
  'live.reconnecting': ['重新连接中…', 'reconnecting…'],
  'state.moving_loaded': ['重车行驶', 'moving, loaded'],
  'state.moving_empty': ['空车行驶', 'moving, empty'],
  'state.stopped': ['停车', 'stopped'],
  'state.offline': ['离线', 'offline'],
  'state.violation': ['违规中', 'in violation'],
  'legend.trucks': ['车辆', 'Trucks'],
  'legend.areas': ['区域', 'Areas'],
  'kind.construction_site': ['工地', 'construction site'],
  'kind.disposal_site': ['消纳场', 'disposal site'],
  'kind.transfer_dock': ['转运码头', 'transfer dock'],
  'kind.restricted_zone': ['禁行区', 'restricted zone'],
  'kind.district': ['行政区', 'district'],
  'kind.corridor': ['核准路线', 'permit corridor'],
  'kind.road': ['道路', 'road'],

  'field.plate': ['车牌', 'Plate'],
  'field.company': ['企业', 'Company'],
  'field.permit': ['核准证', 'Permit'],
  'field.speed': ['速度', 'Speed'],
  'field.lid': ['篷盖', 'Lid'],
  'field.lift': ['举升', 'Lift'],
  'field.load': ['载重状态', 'Load'],
  'field.load_kg': ['载重 (kg)', 'Load (kg)'],
  'field.state': ['状态', 'State'],
  'field.ts': ['定位时间', 'Fix time'],
  'field.violating': ['当前违规', 'Violating now'],
  'field.rule': ['违规类型', 'Rule'],
  'field.severity': ['严重程度', 'Severity'],
  'field.district': ['辖区', 'District'],
  'field.start': ['开始', 'Start'],
  'field.end': ['结束', 'End'],
  'field.peak': ['峰值', 'Peak'],
  'field.review': ['审核状态', 'Review'],
  'field.vstate': ['违规状态', 'Violation state'],
  'field.id': ['编号', 'Id'],
  'field.fence': ['围栏', 'Fence'],
  'field.reason': ['理由', 'Reason'],
  'field.note': ['备注', 'Note'],
  'field.reviewed_by': ['审核人', 'Reviewed by'],
  'field.score': ['信用分', 'Score'],
  'field.grade': ['等级', 'Grade'],
  'field.rank': ['排名', 'Rank'],
  'field.vehicles': ['车辆数', 'Vehicles'],
  'field.violations': ['违规数', 'Violations'],
  'field.type': ['车型', 'Type'],
  'field.rated_load': ['核定载重 (kg)', 'Rated load (kg)'],
  'field.volume': ['容积 (m³)', 'Volume (m³)'],
  'field.inspection': ['年检有效期', 'Inspection valid to'],
  'field.violation': ['违规', 'Violation'],
  'field.appeal_state': ['申诉状态', 'Appeal state'],
  'field.filed_at': ['提交时间', 'Filed'],
  'field.decision_note': ['处理意见', 'Decision note'],
  'field.origin': ['起点', 'Origin'],
  'field.destinations': ['终点', 'Destinations'],
  'field.valid_from': ['有效期自', 'Valid from'],
  'field.valid_to': ['有效期至', 'Valid to'],
  'field.hours': ['通行时段', 'Hours'],
  'kmh': ['km/h', 'km/h'],
  'sensor.lid.0': ['关闭', 'closed'],
  'sensor.lid.1': ['打开', 'open'],
  'sensor.lift.0': ['放下', 'down'],
  'sensor.lift.1': ['举升', 'raised'],
  'sensor.load.0': ['空载', 'empty'],
  'sensor.load.1': ['半载', 'half'],
  'sensor.load.2': ['满载', 'full'],
  'panel.track': ['近一小时轨迹', 'Track of the last hour'],
  'panel.playback': ['轨迹回放', 'Play back'],

  'queue.title': ['待审核违规', 'Violations to review'],
  'queue.counts': ['按辖区与严重程度', 'By district and severity'],
  'queue.severity': ['最低严重程度', 'Minimum severity'],
  'queue.empty': ['没有待审核的违规。', 'Nothing to review.'],
  'queue.total': ['合计', 'Total'],
  'queue.sev': ['严重度', 'Sev.'],
  'review.back': ['返回列表', 'Back to the queue'],
  'review.decision': ['审核决定', 'Decision'],
  'review.confirm': ['确认违规', 'Confirm'],
  'review.dismiss': ['撤销违规', 'Dismiss'],
  'review.pick_reason': ['— 选择理由 —', '— choose a reason —'],
  'review.reasons_confirm': ['确认理由', 'Reasons to confirm'],
  'review.reasons_dismiss': ['撤销理由', 'Reasons to dismiss'],
  'review.need_reason': ['请选择理由，然后再次点击该按钮。', 'Choose a reason, then press the button again.'],
  'review.done': ['已审核', 'Reviewed'],
  'review.sending': ['提交中…', 'Sending…'],
  'review.corridor': ['核准路线', 'Permit corridor'],
  'photo.title': ['现场照片', 'Photos'],
  'photo.channel': ['通道', 'camera'],
  'photo.missing': ['无法加载', 'not available'],
  'photo.previous': ['上一张', 'Previous'],
  'photo.next': ['下一张', 'Next'],
  'seal.title': ['证据封存', 'Evidence seal'],
  'seal.sealed': ['已封存 ✓', 'sealed ✓'],
  'seal.unsealed': ['未封存', 'not sealed'],
  'seal.tampered': ['已被篡改 ✗', 'tampered ✗'],
  'seal.at': ['封存于', 'sealed at'],
  'mark.start': ['起', 'S'],
  'mark.peak': ['峰', 'P'],
  'mark.end': ['止', 'E'],
  'review.new': ['待审核', 'new'],
  'review.confirmed': ['已确认', 'confirmed'],
  'review.dismissed': ['已撤销', 'dismissed'],
  'vstate.open': ['进行中', 'open'],
  'vstate.closed': ['已结束', 'closed'],
  'vstate.retracted': ['已撤回', 'retracted'],
  'appeal.pending': ['待处理', 'pending'],
  'appeal.upheld': ['维持原判', 'upheld'],
  'appeal.overturned': ['已撤销', 'overturned'],

  'playback.plate': ['车牌', 'Plate'],
  'playback.from': ['从', 'From'],
  'playback.to': ['到', 'To'],
  'playback.load': ['加载轨迹', 'Load track'],
  'playback.play': ['播放', 'Play'],
  'playback.pause': ['暂停', 'Pause'],
  'playback.speed': ['倍速', 'Speed'],
  'playback.empty': ['该时段没有轨迹。', 'No track in this time range.'],
  'playback.range': ['时间范围须在 24 小时以内，且开始早于结束。', 'The range must be under 24 h, and start before it ends.'],
  'playback.fixes': ['个定位点', 'fixes'],

  'company.score': ['信用评价', 'Credit rating'],
  'company.vehicles': ['车辆', 'Vehicles'],
  'company.violations': ['违规记录', 'Violations'],
  'company.appeals': ['申诉', 'Appeals'],
  'public.grades': ['企业信用等级', 'Company credit grades'],
  'public.permits': ['有效核准证', 'Active permits'],

  'rule.OFF_ROUTE': ['偏离核准路线', 'off route'],
  'rule.UNAUTHORISED_DUMP': ['偷倒乱卸', 'unauthorised dump'],
  'rule.UNCOVERED_LOAD': ['未密闭运输', 'uncovered load'],
  'rule.RESTRICTED_ZONE': ['闯入禁行区', 'restricted zone'],
  'rule.NO_PERMIT': ['无证运输', 'no permit'],
  'rule.OVERSPEED': ['超速', 'overspeed'],
  'rule.SIGNAL_LOSS': ['信号丢失', 'signal loss'],
  'rule.WRONG_DESTINATION': ['未按指定场地消纳', 'wrong destination'],
  'rule.TRIP_NOT_CLOSED': ['运输未闭环', 'trip not closed'],
  'rule.OVERLOAD': ['超载', 'overload'],
  'rule.PERMIT_VOLUME_EXCEEDED': ['超出核准方量', 'permit volume exceeded'],
  'rule.TERMINAL_TAMPER': ['终端屏蔽/断电', 'terminal tampered'],
};

let current = localStorage.getItem(LANG_KEY)
  || (navigator.language.toLowerCase().startsWith('zh') ? 'zh' : 'en');
let timeZone = 'Asia/Shanghai';

export function lang() {
  return current;
}

export function setLang(value) {
  current = value;
  localStorage.setItem(LANG_KEY, value);
  document.documentElement.lang = value === 'zh' ? 'zh-CN' : 'en';
}

export function t(key) {
  const entry = LABELS[key];
  if (!entry) return key;
  return entry[current === 'zh' ? 0 : 1];
}

// Labels whose key is built from a value the server sends (a rule, a state): an unknown value
// shows as itself rather than as a key.
export function tv(prefix, value) {
  if (value === null || value === undefined || value === '') return '–';
  const key = `${prefix}.${value}`;
  return key in LABELS ? t(key) : String(value);
}

// Fills [data-i18n] (text) and [data-i18n-placeholder] under root.
export function translate(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
}

export function setTimeZone(zone) {
  timeZone = zone;
}

export function zone() {
  return timeZone;
}

function toDate(value) {
  if (value === null || value === undefined || value === '') return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

// The city's wall clock at epoch ms, as [year, month, day, hour, minute, second]. One
// numeric format in both languages (2026-12-03 08:15:00) reads the same to everyone.
const wallFormats = new Map();
function wallClock(ms) {
  if (!wallFormats.has(timeZone)) {
    wallFormats.set(timeZone, new Intl.DateTimeFormat('en-US', {
      timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric',
      hour: 'numeric', minute: 'numeric', second: 'numeric',
    }));
  }
  const parts = wallFormats.get(timeZone).formatToParts(new Date(ms));
  const get = type => Number(parts.find(p => p.type === type).value);
  return [get('year'), get('month'), get('day'), get('hour'), get('minute'), get('second')];
}

const p2 = n => String(n).padStart(2, '0');

// epoch ms or an ISO string → date and time in the city's zone
export function fmtTime(value) {
  const d = toDate(value);
  if (!d) return '–';
  const [y, mo, day, h, mi, s] = wallClock(d.getTime());
  return `${y}-${p2(mo)}-${p2(day)} ${p2(h)}:${p2(mi)}:${p2(s)}`;
}

export function fmtClock(value) {
  const d = toDate(value);
  if (!d) return '–';
  const [, , , h, mi, s] = wallClock(d.getTime());
  return `${p2(h)}:${p2(mi)}:${p2(s)}`;
}

export function fmtDate(value) {
  const d = toDate(value);
  if (!d) return '–';
  const [y, mo, day] = wallClock(d.getTime());
  return `${y}-${p2(mo)}-${p2(day)}`;
}

// A photo's caption: when it was taken, in the city's time (the clock alone under a thumbnail,
// date and clock when `long`), and the terminal's camera channel it came from.
export function photoCaption(photo, { long = false } = {}) {
  const when = (long ? fmtTime : fmtClock)(photo?.taken_at);
  const channel = photo?.channel;
  return channel === null || channel === undefined || channel === ''
    ? when : `${when} · ${t('photo.channel')} ${channel}`;
}

// The evidence seal badge ('seal.<state>') from GET /v1/violations/{id}/evidence/verify's
// answer; null (or an answer without a seal) when nothing is sealed yet. 'tampered' when the
// bundle no longer matches its seal or the seal itself does not check.
export function sealState(verify) {
  if (!verify?.seal) return 'unsealed';
  return verify.ok === true ? 'sealed' : 'tampered';
}

// <input type=datetime-local> values are wall-clock times without a zone: these read and write
// them as the city's time, whatever the browser's own zone is.
export function toInputValue(ms) {
  // to the second (the inputs have step="1"): a range from a link is kept exactly
  const [y, mo, d, h, mi, s] = wallClock(ms);
  return `${y}-${p2(mo)}-${p2(d)}T${p2(h)}:${p2(mi)}:${p2(s)}`;
}

export function fromInputValue(value) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(value || '');
  if (!m) return null;
  const asUtc = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
  // the zone's offset at that moment; a second pass settles a daylight-saving edge
  let ms = asUtc;
  for (let i = 0; i < 2; i++) {
    const [y, mo, d, h, mi, s] = wallClock(ms);
    ms += asUtc - Date.UTC(y, mo - 1, d, h, mi, s);
  }
  return ms;
}
