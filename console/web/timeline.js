// The sensor timeline under a violation's map: speed, lid, lift and load over time (uPlot),
// with the violation's start, peak and end as vertical lines.
import uPlot from './vendor/uplot/uPlot.esm.js';
import { fmtClock, fmtTime, t, zone } from './i18n.js';

const MARK_COLOURS = { start: '#15803d', peak: '#dc2626', end: '#111827' };

// Draws the marks as labelled vertical lines across the plotting area.
function markLines(marks) {
  return u => {
    const { ctx, bbox } = u;
    ctx.save();
    ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
    ctx.lineWidth = 1.5 * devicePixelRatio;
    for (const [name, mark] of Object.entries(marks)) {
      if (!mark) continue;
      const x = Math.round(u.valToPos(mark.ts / 1000, 'x', true));
      if (x < bbox.left || x > bbox.left + bbox.width) continue;
      ctx.strokeStyle = ctx.fillStyle = MARK_COLOURS[name];
      ctx.setLineDash(name === 'peak' ? [4 * devicePixelRatio, 3 * devicePixelRatio] : []);
      ctx.beginPath();
      ctx.moveTo(x, bbox.top);
      ctx.lineTo(x, bbox.top + bbox.height);
      ctx.stroke();
      ctx.fillText(t(`mark.${name}`), x + 3 * devicePixelRatio, bbox.top + 12 * devicePixelRatio);
    }
    ctx.restore();
  };
}

// track: {columns, rows} with ts (epoch ms), speed_kmh, lid, lift, load; marks: {start, peak, end}.
// Returns {destroy}; the plot follows the container's size.
export function sensorTimeline(container, track, marks) {
  const col = name => track.columns.indexOf(name);
  const pick = name => track.rows.map(r => r[col(name)] ?? null);
  const data = [track.rows.map(r => r[col('ts')] / 1000), pick('speed_kmh'), pick('lid'), pick('lift'), pick('load')];
  const stepped = uPlot.paths.stepped({ align: 1 });
  // lid and lift are 0/1, load 0/1/2: steps on a scale of their own, right axis
  const sensor = (label, stroke) => ({
    label, stroke, width: 1.5, scale: 'state', paths: stepped, points: { show: false },
    value: (u, v) => (v === null ? '–' : String(v)),
  });
  const size = () => ({ width: Math.max(container.clientWidth - 16, 200), height: Math.max(container.clientHeight - 40, 80) });
  const plot = new uPlot({
    ...size(),
    tzDate: ts => uPlot.tzDate(new Date(ts * 1000), zone()),
    cursor: { drag: { x: true, y: false } },
    scales: { x: { time: true }, kmh: { range: (u, min, max) => [0, Math.max(60, max * 1.1)] }, state: { range: [-0.1, 2.4] } },
    series: [
      { value: (u, v) => (v === null ? '–' : fmtTime(v * 1000)) },
      { label: `${t('field.speed')} (km/h)`, stroke: '#2563eb', width: 1.5, scale: 'kmh', fill: 'rgba(37,99,235,0.06)' },
      sensor(t('field.lid'), '#d97706'),
      sensor(t('field.lift'), '#7c3aed'),
      sensor(t('field.load'), '#15803d'),
    ],
    axes: [
      { values: (u, splits) => splits.map(s => fmtClock(s * 1000)) },
      { scale: 'kmh', label: 'km/h', size: 50 },
      { scale: 'state', side: 1, splits: [0, 1, 2], grid: { show: false }, size: 30 },
    ],
    hooks: { draw: [markLines(marks)] },
  }, data, container);
  const observer = new ResizeObserver(() => plot.setSize(size()));
  observer.observe(container);
  return {
    destroy() {
      observer.disconnect();
      plot.destroy();
    },
  };
}
