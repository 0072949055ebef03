// What the pages' maps share (web/pages/map_parts.py embeds their data as JSON). Plain script, no build step.
// Every text from the data goes in as a text node, never as HTML: point and unit names come from registry files.
"use strict";

window.citykpiMap = (() => {
  // Where an empty map looks: Vietnam, with nothing to fit.
  const VIETNAM = [16.0, 106.0];

  const readData = (id) => {
    const holder = document.getElementById(id);
    return holder ? JSON.parse(holder.textContent) : null;
  };

  const escapeText = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

  // Shows the section first: Leaflet sizes the map from its container, which a hidden section has not got.
  const create = (section, container, data) => {
    section.hidden = false;
    const map = L.map(container, { scrollWheelZoom: false });
    if (data.tiles) {
      // The attribution is plain text in the settings; Leaflet writes attributions as HTML.
      L.tileLayer(data.tiles.url, { maxZoom: 19, attribution: escapeText(data.tiles.attribution) }).addTo(map);
    }
    L.control.scale({ imperial: false }).addTo(map);
    return map;
  };

  const fit = (map, places) => {
    if (places.length === 0) {
      map.setView(VIETNAM, 5);
    } else {
      map.fitBounds(L.latLngBounds(places), { padding: [30, 30], maxZoom: 15 });
    }
  };

  const element = (tag, text) => {
    const made = document.createElement(tag);
    if (text !== undefined) made.textContent = text;
    return made;
  };

  const definitions = (pairs) => {
    const list = element("dl");
    for (const [term, value] of pairs) {
      list.append(element("dt", term), element("dd", value));
    }
    return list;
  };

  return { readData, create, fit, element, definitions };
})();
