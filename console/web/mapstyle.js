// The base map is the city's own GeoJSON (districts, fences, roads, permit corridors): no tiles,
// no glyphs, no sprites, nothing from the network. Without glyphs there are no text layers;
// names go in HTML panels and the legend.
import * as maplibregl from './vendor/maplibre-gl/maplibre-gl.mjs';

export { maplibregl };

export const KIND_COLOURS = {
  construction_site: '#a16207',
  disposal_site: '#15803d',
  transfer_dock: '#0e7490',
  restricted_zone: '#dc2626',
  corridor: '#a78bfa',
};

const EMPTY = { type: 'FeatureCollection', features: [] };

// Few layers and few full-screen passes: in a browser without a GPU (software WebGL) every
// layer's pixels cost, so fences share one fill layer coloured by kind, fills skip their
// antialiasing pass (an outline layer draws the edge), and the land is the background itself.
export function cityStyle(layers) {
  const kinds = Object.keys(KIND_COLOURS).filter(k => k !== 'corridor');
  const byKind = ['match', ['get', 'kind'], ...kinds.flatMap(k => [k, KIND_COLOURS[k]]), '#000000'];
  const isFence = ['in', ['get', 'kind'], ['literal', kinds]];
  const restricted = ['==', ['get', 'kind'], 'restricted_zone'];
  const width = w => ['interpolate', ['linear'], ['zoom'], 9, w / 2, 14, w * 2];
  const roadClass = cls => ['==', ['get', 'class'], cls];
  const road = (cls, w, casing, colour, edge) => [
    { id: `road-${cls}-casing`, type: 'line', source: 'roads', filter: roadClass(cls),
      layout: { 'line-join': 'round' }, paint: { 'line-color': edge, 'line-width': width(casing) } },
    { id: `road-${cls}`, type: 'line', source: 'roads', filter: roadClass(cls),
      layout: { 'line-join': 'round' }, paint: { 'line-color': colour, 'line-width': width(w) } },
  ];
  return {
    version: 8,
    sources: {
      fences: { type: 'geojson', data: layers?.fences || EMPTY },
      roads: { type: 'geojson', data: layers?.roads || EMPTY },
      corridors: { type: 'geojson', data: layers?.corridors || EMPTY },
    },
    layers: [
      { id: 'background', type: 'background', paint: { 'background-color': '#ece9e1' } },
      // corridors overlap by the hundred along busy roads: opaque pale colours, under the
      // roads, read as one halo instead of stacking into a dark band
      { id: 'corridor-fill', type: 'fill', source: 'corridors',
        paint: { 'fill-color': '#ebe5fb', 'fill-antialias': false } },
      { id: 'corridor-line', type: 'line', source: 'corridors',
        paint: { 'line-color': KIND_COLOURS.corridor, 'line-width': 0.6 } },
      { id: 'district-line', type: 'line', source: 'fences', filter: ['==', ['get', 'kind'], 'district'],
        paint: { 'line-color': '#a8a190', 'line-width': 1, 'line-dasharray': [4, 3] } },
      { id: 'road-other', type: 'line', source: 'roads',
        filter: ['!', ['in', ['get', 'class'], ['literal', ['expressway', 'arterial']]]],
        paint: { 'line-color': '#ffffff', 'line-width': 1.5 } },
      ...road('arterial', 2, 3.5, '#ffffff', '#cfc8b8'),
      ...road('expressway', 3, 5, '#fbe3a1', '#d4b25f'),
      { id: 'fence-fill', type: 'fill', source: 'fences', filter: isFence,
        paint: { 'fill-color': byKind, 'fill-opacity': ['case', restricted, 0.1, 0.22], 'fill-antialias': false } },
      { id: 'fence-line', type: 'line', source: 'fences', filter: ['all', isFence, ['!', restricted]],
        paint: { 'line-color': byKind, 'line-width': 1.2 } },
      { id: 'fence-restricted-line', type: 'line', source: 'fences', filter: restricted,
        paint: { 'line-color': KIND_COLOURS.restricted_zone, 'line-width': 1.2, 'line-dasharray': [3, 2] } },
    ],
  };
}

// A map of the city, framed on its bounding box; resolves once the style has loaded.
export function createCityMap(container, { layers, bbox }) {
  const map = new maplibregl.Map({
    container,
    style: cityStyle(layers),
    bounds: bbox,
    fitBoundsOptions: { padding: 20 },
    attributionControl: false,
    dragRotate: false,
    pitchWithRotate: false,
    fadeDuration: 0,
  });
  map.touchZoomRotate.disableRotation();
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-right');
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-right');
  return new Promise(resolve => map.once('load', () => resolve(map)));
}

// Frames the map on the bounding box of some [lon, lat] points.
export function fitPoints(map, points, padding = 60) {
  if (!points.length) return;
  const bounds = new maplibregl.LngLatBounds(points[0], points[0]);
  for (const p of points) bounds.extend(p);
  map.fitBounds(bounds, { padding, maxZoom: 16, duration: 0 });
}

// A marker with a short text label (start / peak / end, the playback head).
export function labelMarker(className, text) {
  const el = document.createElement('div');
  el.className = `marker ${className}`;
  el.textContent = text;
  return new maplibregl.Marker({ element: el });
}
