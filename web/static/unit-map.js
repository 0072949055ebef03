// The report's overview map: a circle per administrative unit, sized by its number of points, coloured by
// the share covered. The indicator's select reloads the page for another indicator. When done it writes the
// number of circles into the map's data-drawn attribute (a test reads it).
"use strict";

(() => {
  const COLOURS = { high: "#2e7d32", mid: "#f9a825", low: "#c62828" };
  const section = document.getElementById("unit-map-section");
  if (!section || typeof L === "undefined" || !window.citykpiMap) return;
  const { readData, create, fit, element } = window.citykpiMap;
  const data = readData("unit-map-data");
  const container = document.getElementById("unit-map");
  const form = document.getElementById("unit-map-form");
  form.querySelector("select").addEventListener("change", () => form.submit());

  const popup = (unit) => {
    const box = element("div");
    box.append(element("strong", unit.name),
               element("p", `${unit.covered} / ${unit.points} ${data.labels.covered} (${unit.percent}%)`));
    return box;
  };

  const map = create(section, container, data);
  const located = data.units.filter((u) => u.lat !== null && u.lon !== null);
  const most = Math.max(1, ...located.map((u) => u.points));
  // Largest first, so that a small unit's circle stays on top and can be clicked.
  located.sort((a, b) => b.points - a.points);
  // The view first: Leaflet places a layer only on a map that has one.
  fit(map, located.map((u) => [u.lat, u.lon]));
  for (const unit of located) {
    const circle = L.circleMarker([unit.lat, unit.lon], {
      radius: 8 + 22 * Math.sqrt(unit.points / most), color: "#263238", weight: 1,
      fillColor: COLOURS[unit.band], fillOpacity: 0.7, className: `unit-circle unit-${unit.band}`,
    }).bindPopup(() => popup(unit)).addTo(map);
    circle.getElement().setAttribute("data-unit", unit.code);
  }
  container.setAttribute("data-drawn", String(located.length));
})();
