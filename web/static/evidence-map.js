// The evidence page's map: each point of the denominator, coloured by why it counted or not, with a popup.
// When done it writes what it drew into the map's data-drawn attribute (a test reads it).
"use strict";

(() => {
  const COLOURS = { "covered": "#2e7d32", "not-covered": "#ef6c00", "no-device": "#9e9e9e" };
  // Covered points first, so that the ones an official looks for are drawn on top where points crowd.
  const ORDER = { "covered": 0, "not-covered": 1, "no-device": 2 };
  const section = document.getElementById("evidence-map-section");
  if (!section || typeof L === "undefined" || !window.citykpiMap) return;
  const { readData, create, fit, element, definitions } = window.citykpiMap;
  const data = readData("evidence-map-data");
  const container = document.getElementById("evidence-map");

  const popup = (point) => {
    const labels = data.labels;
    const onlineOnly = (d) => (d.online_only_hours ? `, ${d.online_only_hours} ${labels.online_only}` : "");
    const devices = point.devices.map((d) => `${d.id} (${d.up_hours} ${labels.hours}${onlineOnly(d)})`).join(", ");
    const box = element("div");
    const link = element("a", labels.history);
    link.href = point.url;
    box.append(element("strong", point.name), element("p", data.states[point.state]), definitions([
      [labels.id, point.id],
      [labels.unit, point.unit],
      [labels.availability, `${point.up} / ${point.in_force} ${labels.hours} (${point.percent}%)`],
      [labels.devices, devices || labels.none],
    ]), link);
    return box;
  };

  const map = create(section, container, data);
  const drawn = {};
  const located = data.points.filter((p) => p.lat !== null && p.lon !== null);
  located.sort((a, b) => ORDER[a.state] - ORDER[b.state]);
  // The view first: Leaflet places a layer only on a map that has one.
  fit(map, located.map((p) => [p.lat, p.lon]));
  for (const point of located) {
    const marker = L.circleMarker([point.lat, point.lon], {
      radius: 7, color: "#263238", weight: 1, fillColor: COLOURS[point.state], fillOpacity: 0.9,
      className: `point point-${point.state}`,
    }).bindPopup(() => popup(point)).addTo(map);
    marker.getElement().setAttribute("data-point", point.id);
    drawn[point.state] = (drawn[point.state] || 0) + 1;
  }
  container.setAttribute("data-drawn", JSON.stringify(drawn));
})();
