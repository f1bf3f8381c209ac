/* FieldOps map runtime: draws incidents (clustered, coloured by priority, shaped by status),
 * hot spots, heat, crews and declared emergency areas on a folium map; shades districts by
 * open incidents; adds the legend, the counters and the French/English switch. On the live
 * page it asks for the dispatcher key once, loads the current state from the change feed and
 * then polls it every second. Served from /static/fieldops/map.js, or inlined in a static map.
 */
(function () {
  "use strict";

  var PRIORITY_COLOURS = { 1: "#b2182b", 2: "#e8590c", 3: "#f2a104", 4: "#3a7bbf", 5: "#7d7d7d" };
  var STATUS_SHAPES = {
    open: '<circle cx="9" cy="9" r="6.6"/>',
    assigned: '<rect x="2.8" y="2.8" width="12.4" height="12.4"/>',
    acknowledged: '<polygon points="9,1.2 16.8,9 9,16.8 1.2,9"/>',
    en_route: '<polygon points="9,1.2 17,15.8 1,15.8"/>',
    on_scene:
      '<polygon points="9,0.8 11.2,6.3 17,6.6 12.5,10.3 14,16.2 9,12.9 4,16.2 5.5,10.3 1,6.6 6.8,6.3"/>',
  };
  var OPEN_STATUSES = ["open", "assigned", "acknowledged", "en_route", "on_scene"];
  var CREW_COLOURS = {
    available: "#2b8a3e",
    assigned: "#1864ab",
    en_route: "#5f3dc4",
    on_scene: "#c2255c",
    off_duty: "#868e96",
  };
  var DISTRICT_BREAKS = [1, 10, 50, 200, 1000];
  var DISTRICT_COLOURS = ["#ffffff", "#fff3bf", "#ffd43b", "#fd7e14", "#e03131", "#862e2e"];
  var FLOOD_COLOURS = { Mineure: "#9ecae1", "Modérée": "#4a98c9", "Élevée": "#1764ab", Majeure: "#08306b" };
  var METRO_COLOURS = { verte: "#008e4f", orange: "#f08123", jaune: "#ffd900", bleue: "#0083ca" };
  var HOTSPOT_STYLE = { color: "#a61e4d", weight: 2, dashArray: "5 4", fillColor: "#f783ac", fillOpacity: 0.22 };
  var EMERGENCY_STYLE = { color: "#c92a2a", weight: 2.5, dashArray: "9 6", fillColor: "#ff6b6b", fillOpacity: 0.12 };
  var KEY_STORAGE = "fieldops.dispatcher_key";
  var LANG_STORAGE = "fieldops.lang";
  var GAP_POLLS = 30;

  function esc(value) {
    return String(value === null || value === undefined ? "" : value).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function shapeSvg(status, colour, size) {
    return (
      '<svg width="' + size + '" height="' + size + '" viewBox="0 0 18 18" aria-hidden="true">' +
      '<g fill="' + colour + '" stroke="#1b1b1b" stroke-width="1.2">' +
      (STATUS_SHAPES[status] || STATUS_SHAPES.open) + "</g></svg>"
    );
  }

  var iconCache = {};
  function incidentIcon(priority, status) {
    var key = priority + ":" + status;
    if (!iconCache[key]) {
      iconCache[key] = L.divIcon({
        className: "fo-incident",
        html: shapeSvg(status, PRIORITY_COLOURS[priority] || "#555555", 18),
        iconSize: [18, 18],
        iconAnchor: [9, 9],
        popupAnchor: [0, -8],
      });
    }
    return iconCache[key];
  }

  function clusterIcon(cluster) {
    var markers = cluster.getAllChildMarkers();
    var best = 5;
    for (var i = 0; i < markers.length && best > 1; i++) {
      if (markers[i].priority < best) best = markers[i].priority;
    }
    var n = cluster.getChildCount();
    var size = n < 10 ? 30 : n < 100 ? 36 : n < 1000 ? 42 : 50;
    return L.divIcon({
      html: '<div style="background:' + PRIORITY_COLOURS[best] + '"><span>' + n + "</span></div>",
      className: "fo-cluster",
      iconSize: [size, size],
    });
  }

  function makeLayer(kind) {
    if (kind === "incidents") {
      return L.markerClusterGroup({
        chunkedLoading: true,
        chunkInterval: 200,
        chunkDelay: 1,
        showCoverageOnHover: false,
        maxClusterRadius: 60,
        disableClusteringAtZoom: 18,
        iconCreateFunction: clusterIcon,
      });
    }
    if (kind === "heat") {
      return L.heatLayer([], { radius: 20, blur: 18, minOpacity: 0.25, maxZoom: 15 });
    }
    return L.featureGroup();
  }

  function districtColour(count) {
    var i = 0;
    while (i < DISTRICT_BREAKS.length && count >= DISTRICT_BREAKS[i]) i++;
    return DISTRICT_COLOURS[i];
  }

  function readKeyFromFragment() {
    var match = /(?:^#|&)key=([^&]+)/.exec(window.location.hash || "");
    if (!match) return null;
    var key = decodeURIComponent(match[1]);
    try {
      window.sessionStorage.setItem(KEY_STORAGE, key);
    } catch (e) {
      /* storage refused: keep the key in memory only */
    }
    // Do not leave the key in the address bar or the history.
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
    return key;
  }

  function storedKey() {
    try {
      return window.sessionStorage.getItem(KEY_STORAGE);
    } catch (e) {
      return null;
    }
  }

  function getJson(url, key) {
    return window.fetch(url, {
      headers: { Authorization: "Bearer " + key, Accept: "application/json" },
      cache: "no-store",
    }).then(function (response) {
      if (response.status === 401 || response.status === 403) {
        var error = new Error("the key was refused");
        error.auth = true;
        throw error;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  // The live page names its first requests before this script loads
  // (window.FIELDOPS_PREFETCH): they start now, while the map and its base layers are
  // being built, instead of after.
  var prefetched = {};
  var prefetchKey = null;
  if (window.FIELDOPS_PREFETCH) {
    prefetchKey = readKeyFromFragment() || storedKey();
    if (prefetchKey) {
      window.FIELDOPS_PREFETCH.forEach(function (url) {
        var answer = getJson(url, prefetchKey);
        answer.catch(function () {
          /* handled where the answer is used */
        });
        prefetched[url] = { key: prefetchKey, answer: answer };
      });
    }
  }

  function App(map, config, layers) {
    this.map = map;
    this.config = config;
    this.layers = layers;
    this.labels = config.labels || {};
    var saved = null;
    try {
      saved = window.localStorage.getItem(LANG_STORAGE);
    } catch (e) {
      saved = null;
    }
    this.lang = saved === "fr" || saved === "en" ? saved : config.lang || "fr";
    this.incidents = new Map();
    this.districtCounts = {};
    this.districtNames = {};
    this.crews = new Map();
    this.emergencyCount = 0;
    this.hotspotCount = 0;
    this.cursor = null;
    this.gaps = new Map();
    this.key = null;
    this.pendingDraws = 0;
    this.drawnCallbacks = [];
    this.hotspotTimer = null;
    this.lastHotspotFetch = 0;
    this.pollTimer = null;
    this.updatedAt = null;
    this.ready = false;
  }

  App.prototype.t = function (key) {
    var own = this.labels[this.lang] || {};
    var fr = this.labels.fr || {};
    return own[key] !== undefined ? own[key] : fr[key] !== undefined ? fr[key] : key;
  };

  App.prototype.span = function (key) {
    return '<span data-i18n="' + esc(key) + '">' + esc(this.t(key)) + "</span>";
  };

  App.prototype.formatTime = function (iso, timeOnly) {
    if (!iso) return "";
    try {
      var style = timeOnly ? { timeStyle: "medium" } : { dateStyle: "medium", timeStyle: "short" };
      style.timeZone = this.config.timezone || "America/Toronto";
      return new Intl.DateTimeFormat(this.lang === "fr" ? "fr-CA" : "en-CA", style).format(new Date(iso));
    } catch (e) {
      return String(iso);
    }
  };

  App.prototype.serviceName = function (code) {
    var service = (this.config.services || {})[code];
    return service ? service[this.lang] || service.fr || code : code;
  };

  // --- controls ------------------------------------------------------------------------------

  App.prototype.addControls = function () {
    var self = this;
    var Lang = L.Control.extend({
      options: { position: "topleft" },
      onAdd: function () {
        var box = L.DomUtil.create("div", "fo-lang leaflet-bar");
        box.setAttribute("role", "group");
        box.innerHTML =
          '<button type="button" data-lang="fr" lang="fr" title="Français">FR</button>' +
          '<button type="button" data-lang="en" lang="en" title="English">EN</button>';
        L.DomEvent.disableClickPropagation(box);
        box.addEventListener("click", function (event) {
          var lang = event.target && event.target.getAttribute("data-lang");
          if (lang) self.setLang(lang);
        });
        return box;
      },
    });
    new Lang().addTo(this.map);

    var Status = L.Control.extend({
      options: { position: "bottomleft" },
      onAdd: function () {
        var box = L.DomUtil.create("div", "fo-status");
        box.innerHTML =
          '<div><b id="fo-count-incidents">0</b> ' + self.span("count.incidents") + "</div>" +
          '<div><b id="fo-count-hotspots">0</b> ' + self.span("count.hotspots") + "</div>" +
          '<div><b id="fo-count-crews">0</b> ' + self.span("count.crews") + "</div>" +
          '<div id="fo-state" class="fo-state">' + self.span("state.loading") + "</div>";
        return box;
      },
    });
    new Status().addTo(this.map);

    var Legend = L.Control.extend({
      options: { position: "bottomright" },
      onAdd: function () {
        var box = L.DomUtil.create("div", "fo-legend");
        box.innerHTML = self.legendHtml();
        L.DomEvent.disableClickPropagation(box);
        L.DomEvent.disableScrollPropagation(box);
        return box;
      },
    });
    this.legend = new Legend().addTo(this.map);
    if (this.map.attributionControl) {
      this.map.attributionControl.addAttribution(this.span("attribution"));
    }
  };

  App.prototype.legendHtml = function () {
    var self = this;
    var rows = [];
    function section(key, items) {
      rows.push('<div class="fo-legend-section"><h4>' + self.span(key) + "</h4>" + items.join("") + "</div>");
    }
    function item(symbol, key, raw) {
      return '<div class="fo-legend-item"><span class="fo-symbol">' + symbol + "</span>" +
        (raw ? esc(raw) : self.span(key)) + "</div>";
    }
    var has = this.layers;
    if (has.incidents) {
      section("legend.priority", [1, 2, 3, 4, 5].map(function (p) {
        return item(shapeSvg("open", PRIORITY_COLOURS[p], 14), "priority." + p);
      }));
      section("legend.status", OPEN_STATUSES.map(function (s) {
        return item(shapeSvg(s, "#ced4da", 14), "status." + s);
      }));
      section("layer.incidents", [
        item('<span class="fo-cluster-sample" style="background:' + PRIORITY_COLOURS[2] + '">12</span>', "legend.cluster"),
      ]);
    }
    if (has.hotspots) {
      section("layer.hotspots", [item('<span class="fo-hotspot-sample">7</span>', "legend.hotspot")]);
    }
    if (has.crews) {
      var crewItems = Object.keys(CREW_COLOURS).map(function (s) {
        return item('<span class="fo-crew-sample" style="background:' + CREW_COLOURS[s] + '"></span>', "crew.status." + s);
      });
      crewItems.push(item('<span class="fo-crew-sample fo-crew-stale" style="background:' + CREW_COLOURS.available + '"></span>', "crew.stale"));
      section("legend.crews", crewItems);
    }
    if (has.emergencies) {
      section("layer.emergencies", [item('<span class="fo-area-sample fo-emergency-sample"></span>', "legend.emergency")]);
    }
    if (has.districts) {
      var bins = [];
      var lower = [0].concat(DISTRICT_BREAKS);
      for (var i = 0; i < DISTRICT_COLOURS.length; i++) {
        var text = i === 0 ? "0" : i === DISTRICT_COLOURS.length - 1 ? lower[i] + "+" : lower[i] + "–" + (lower[i + 1] - 1);
        bins.push(item('<span class="fo-area-sample" style="background:' + DISTRICT_COLOURS[i] + '"></span>', null, text));
      }
      section("legend.districts", bins);
    }
    if (has.flood_zones) {
      section("legend.flood", Object.keys(FLOOD_COLOURS).map(function (c) {
        return item('<span class="fo-area-sample" style="background:' + FLOOD_COLOURS[c] + '"></span>', "flood." + c);
      }));
    }
    if (has.metro_lines) {
      section("legend.metro", Object.keys(METRO_COLOURS).map(function (c) {
        return item('<span class="fo-line-sample" style="background:' + METRO_COLOURS[c] + '"></span>', null, c);
      }));
    }
    return '<details open><summary>' + this.span("legend.title") + "</summary>" + rows.join("") + "</details>";
  };

  App.prototype.setLang = function (lang) {
    if (lang !== "fr" && lang !== "en") return;
    this.lang = lang;
    try {
      window.localStorage.setItem(LANG_STORAGE, lang);
    } catch (e) {
      /* not kept across visits */
    }
    this.applyLang();
  };

  App.prototype.applyLang = function () {
    var self = this;
    document.documentElement.setAttribute("lang", this.lang);
    document.title = this.t("title");
    var nodes = document.querySelectorAll("[data-i18n]");
    for (var i = 0; i < nodes.length; i++) {
      nodes[i].textContent = self.t(nodes[i].getAttribute("data-i18n"));
    }
    var buttons = document.querySelectorAll(".fo-lang button");
    for (var j = 0; j < buttons.length; j++) {
      buttons[j].setAttribute("aria-pressed", String(buttons[j].getAttribute("data-lang") === this.lang));
    }
    this.map.closePopup();
    this.showUpdated();
  };

  App.prototype.setState = function (key, extra) {
    var box = document.getElementById("fo-state");
    if (!box) return;
    box.className = "fo-state fo-state-" + key.split(".")[1];
    box.innerHTML = this.span(key) + (extra ? " " + esc(extra) : "");
  };

  App.prototype.showUpdated = function () {
    if (this.config.as_of && !this.config.live) {
      this.setState("state.as_of", this.formatTime(this.config.as_of));
    } else if (this.updatedAt && this.online) {
      this.setState("state.updated", this.formatTime(this.updatedAt.toISOString(), true));
    }
  };

  App.prototype.updateCounters = function () {
    var set = function (id, n) {
      var node = document.getElementById(id);
      if (node) node.textContent = String(n);
    };
    set("fo-count-incidents", this.incidents.size);
    set("fo-count-hotspots", this.hotspotCount);
    set("fo-count-crews", this.crews.size);
  };

  // --- base layers ---------------------------------------------------------------------------

  App.prototype.bindBaseLayers = function () {
    var self = this;
    var districts = this.layers.districts;
    if (districts) {
      districts.eachLayer(function (layer) {
        var props = layer.feature.properties;
        self.districtNames[props.id] = props.name;
        layer.bindTooltip(function () {
          return esc(props.name) + " : " + (self.districtCounts[props.id] || 0) + " " + esc(self.t("count.incidents").toLowerCase());
        }, { sticky: true });
      });
    }
    if (this.layers.flood_zones) {
      this.layers.flood_zones.eachLayer(function (layer) {
        layer.bindTooltip(function () {
          return esc(self.t("legend.flood")) + " : " + esc(self.t("flood." + layer.feature.properties.VULN_CAT));
        }, { sticky: true });
      });
    }
    if (this.layers.metro_lines) {
      this.layers.metro_lines.eachLayer(function (layer) {
        layer.bindTooltip(function () {
          return esc(self.t("legend.metro")) + " : " + esc(layer.feature.properties.route_name);
        }, { sticky: true });
      });
    }
    if (this.layers.metro_stations) {
      this.layers.metro_stations.eachLayer(function (layer) {
        layer.bindTooltip(function () {
          var p = layer.feature.properties;
          return esc(p.name) + " (" + esc(self.t("metro." + p.kind)) + ")";
        });
      });
    }
  };

  App.prototype.restyleDistricts = function () {
    var self = this;
    if (!this.layers.districts) return;
    this.layers.districts.eachLayer(function (layer) {
      var count = self.districtCounts[layer.feature.properties.id] || 0;
      layer.setStyle({ fillColor: districtColour(count), fillOpacity: count > 0 ? 0.5 : 0.08 });
    });
  };

  // --- incidents -----------------------------------------------------------------------------

  App.prototype.makeMarker = function (feature) {
    var c = feature.geometry.coordinates;
    var p = feature.properties;
    var marker = L.marker([c[1], c[0]], { icon: incidentIcon(p.priority, p.status), keyboard: false });
    marker.incidentId = feature.id;
    marker.priority = p.priority;
    return marker;
  };

  App.prototype.countDistrict = function (feature, delta) {
    var id = feature.properties.district_id;
    this.districtCounts[id] = (this.districtCounts[id] || 0) + delta;
  };

  App.prototype.upsertIncidents = function (features) {
    var cluster = this.layers.incidents;
    var add = [];
    var remove = [];
    for (var i = 0; i < features.length; i++) {
      var feature = features[i];
      var old = this.incidents.get(feature.id);
      if (old) {
        remove.push(old.marker);
        this.countDistrict(old.feature, -1);
        this.incidents.delete(feature.id);
      }
      if (OPEN_STATUSES.indexOf(feature.properties.status) >= 0) {
        var marker = this.makeMarker(feature);
        add.push(marker);
        this.incidents.set(feature.id, { feature: feature, marker: marker });
        this.countDistrict(feature, 1);
      }
    }
    if (cluster) {
      if (remove.length) cluster.removeLayers(remove);
      if (add.length) {
        if (this.map.hasLayer(cluster)) this.pendingDraws += 1;
        cluster.addLayers(add);
      }
    }
    this.restyleDistricts();
    this.updateCounters();
  };

  App.prototype.onChunks = function (processed, total) {
    if (processed < total) return;
    this.pendingDraws = Math.max(0, this.pendingDraws - 1);
    if (this.pendingDraws === 0) {
      var callbacks = this.drawnCallbacks;
      this.drawnCallbacks = [];
      callbacks.forEach(function (fn) {
        fn();
      });
    }
  };

  App.prototype.whenDrawn = function (fn) {
    if (this.pendingDraws === 0) fn();
    else this.drawnCallbacks.push(fn);
  };

  App.prototype.incidentRows = function (feature, detail) {
    var p = feature.properties;
    var self = this;
    var status = detail ? detail.status : p.status;
    var priority = detail ? detail.priority : p.priority;
    var district = detail ? detail.district.name : this.districtNames[p.district_id] || p.district_id;
    var rows = [
      ["popup.service", esc(this.serviceName(p.service_code))],
      ["popup.priority", shapeSvg("open", PRIORITY_COLOURS[priority], 12) + " " + esc(this.t("priority." + priority))],
      ["popup.status", shapeSvg(status, "#ced4da", 12) + " " + esc(this.t("status." + status))],
      ["popup.reports", esc(detail ? detail.report_count : p.report_count)],
      ["popup.district", esc(district)],
    ];
    if (detail && detail.address) rows.push(["popup.address", esc(detail.address)]);
    rows.push(["popup.crew", p.crew ? esc(p.crew.name || p.crew) : esc(this.t("popup.none"))]);
    rows.push(["popup.eta", p.eta_at ? esc(this.formatTime(p.eta_at)) : esc(this.t("popup.none"))]);
    return '<table class="fo-table">' + rows.map(function (r) {
      return "<tr><th>" + self.span(r[0]) + "</th><td>" + r[1] + "</td></tr>";
    }).join("") + "</table>";
  };

  App.prototype.eventsHtml = function (events) {
    var self = this;
    if (!events || !events.length) return '<p class="fo-muted">' + this.span("popup.no_events") + "</p>";
    return '<ol class="fo-events">' + events.slice(0, 6).map(function (e) {
      var change = e.data && e.data.to !== undefined
        ? " → " + (e.kind === "status_changed" ? self.span("status." + e.data.to) : esc(e.data.to))
        : "";
      var label = self.t("event." + e.kind) === "event." + e.kind ? esc(e.kind) : self.span("event." + e.kind);
      return "<li><time>" + esc(self.formatTime(e.at)) + "</time> " + label + change +
        ' <span class="fo-muted">' + esc(e.actor) + "</span></li>";
    }).join("") + "</ol>";
  };

  App.prototype.incidentHtml = function (feature, detail, failed) {
    var live = this.config.live;
    var html = '<div class="fo-popup" data-incident="' + esc(feature.id) + '"><h3>' + this.span("popup.incident") +
      " #" + esc(feature.id) + "</h3>" + this.incidentRows(feature, detail);
    if (live) {
      html += "<h4>" + this.span("popup.events") + "</h4>";
      if (detail) html += this.eventsHtml(detail.events);
      else if (failed) html += '<p class="fo-muted">' + this.span("popup.failed") + "</p>";
      else html += '<p class="fo-muted">' + this.span("popup.loading") + "</p>";
      if (live.recommendations) {
        html += '<p><button type="button" class="fo-button" data-action="recommendations">' + this.span("popup.recommendations") +
          '</button></p><div class="fo-recommendations"></div>';
      } else {
        html += '<p class="fo-muted fo-recommendations-soon">' + this.span("popup.recommendations_soon") + "</p>";
      }
    }
    return html + "</div>";
  };

  App.prototype.openIncidentPopup = function (marker) {
    var self = this;
    var entry = this.incidents.get(marker.incidentId);
    if (!entry) return;
    var popup = L.popup({ maxWidth: 340, minWidth: 240, className: "fo-incident-popup" })
      .setLatLng(marker.getLatLng())
      .setContent(this.incidentHtml(entry.feature, null, false))
      .openOn(this.map);
    var live = this.config.live;
    if (!live) return;
    this.api(live.incident.replace("{id}", encodeURIComponent(marker.incidentId)))
      .then(function (detail) {
        popup.setContent(self.incidentHtml(entry.feature, detail, false));
        self.bindRecommendations(popup, marker.incidentId);
      })
      .catch(function (error) {
        if (error.auth) return self.onAuthError();
        popup.setContent(self.incidentHtml(entry.feature, null, true));
      });
  };

  App.prototype.bindRecommendations = function (popup, id) {
    var self = this;
    var live = this.config.live;
    var root = popup.getElement();
    var button = root && root.querySelector('[data-action="recommendations"]');
    if (!button || !live.recommendations) return;
    button.addEventListener("click", function () {
      var box = root.querySelector(".fo-recommendations");
      box.innerHTML = '<p class="fo-muted">' + self.span("popup.loading") + "</p>";
      self.api(live.recommendations.replace("{id}", encodeURIComponent(id)))
        .then(function (body) {
          var items = Array.isArray(body) ? body : body.items || body.recommendations || [];
          if (!items.length) {
            box.innerHTML = '<p class="fo-muted">' + self.span("popup.no_recommendations") + "</p>";
            return;
          }
          box.innerHTML = '<ol class="fo-events fo-recs">' + items.slice(0, 5).map(function (r) {
            var name = r.name || r.crew_name || r.crew_id;
            var eta = r.eta_s !== undefined ? " · " + Math.max(1, Math.round(r.eta_s / 60)) + " min" : "";
            var stale = r.position_stale ? ' <span class="fo-warn">(' + esc(self.t("crew.stale")) + ")</span>" : "";
            var reason = r.reason ? '<br><span class="fo-muted">' + esc(r.reason) + "</span>" : "";
            return "<li><b>" + esc(name) + "</b>" + esc(eta) + stale + reason + "</li>";
          }).join("") + "</ol>";
        })
        .catch(function () {
          box.innerHTML = '<p class="fo-muted">' + self.span("popup.failed") + "</p>";
        });
    });
  };

  // --- hot spots, heat, crews, emergency areas -----------------------------------------------

  App.prototype.hotspotHtml = function (f) {
    var self = this;
    var p = f.properties;
    var groups = Object.keys(p.groups || {}).map(function (g) {
      return esc(self.t("group." + g)) + " " + esc(p.groups[g]);
    }).join(", ");
    var rows = [
      ["hotspot.members", esc(p.member_count)],
      ["hotspot.reports", esc(p.report_count)],
      ["hotspot.dominant", esc(this.t("group." + p.dominant_group))],
      ["hotspot.groups", groups],
      ["hotspot.first", esc(this.formatTime(p.first_report_at))],
      ["hotspot.last", esc(this.formatTime(p.last_report_at))],
    ];
    return '<div class="fo-popup"><h3>' + this.span("hotspot.title") + "</h3><table class=\"fo-table\">" +
      rows.map(function (r) {
        return "<tr><th>" + self.span(r[0]) + "</th><td>" + r[1] + "</td></tr>";
      }).join("") + "</table></div>";
  };

  App.prototype.setHotspots = function (collection) {
    var self = this;
    var layer = this.layers.hotspots;
    var features = (collection && collection.features) || [];
    this.hotspotCount = features.length;
    this.updateCounters();
    if (!layer) return;
    layer.clearLayers();
    features.forEach(function (f) {
      var outline = L.geoJSON(f, { style: HOTSPOT_STYLE });
      outline.bindPopup(function () {
        return self.hotspotHtml(f);
      });
      layer.addLayer(outline);
      var c = f.properties.centroid;
      var label = L.marker([c[1], c[0]], {
        icon: L.divIcon({ className: "fo-hotspot-label", html: "<span>" + esc(f.properties.member_count) + "</span>", iconSize: [30, 30] }),
        keyboard: false,
        zIndexOffset: 500,
      });
      label.bindPopup(function () {
        return self.hotspotHtml(f);
      });
      layer.addLayer(label);
    });
  };

  App.prototype.setHeat = function (collection) {
    var layer = this.layers.heat;
    if (!layer) return;
    var features = (collection && collection.features) || [];
    var max = 1;
    features.forEach(function (f) {
      if (f.properties.report_count > max) max = f.properties.report_count;
    });
    layer.setLatLngs(features.map(function (f) {
      var c = f.geometry.coordinates;
      return [c[1], c[0], Math.sqrt(f.properties.report_count / max)];
    }));
  };

  App.prototype.isStale = function (p) {
    if (p.stale !== undefined && p.stale !== null) return Boolean(p.stale);
    if (!p.position_at) return true;
    var now = this.config.as_of && !this.config.live ? new Date(this.config.as_of) : new Date();
    return (now - new Date(p.position_at)) / 1000 > (this.config.stale_after_s || 300);
  };

  App.prototype.crewMarker = function (f) {
    var self = this;
    var p = f.properties;
    var stale = this.isStale(p);
    var c = f.geometry.coordinates;
    var marker = L.marker([c[1], c[0]], {
      icon: L.divIcon({
        className: "fo-crew-icon",
        html: '<div class="fo-crew' + (stale ? " fo-crew-stale" : "") + '" data-crew="' + esc(f.id) +
          '" style="background:' + (CREW_COLOURS[p.status] || "#495057") + '">' +
          '<svg width="14" height="12" viewBox="0 0 14 12" aria-hidden="true"><path fill="#fff" d="M0 2h8v6H0zM8 4h3l3 3v1H8zM2 9.5a1.5 1.5 0 1 0 3 0 1.5 1.5 0 0 0-3 0zm7 0a1.5 1.5 0 1 0 3 0 1.5 1.5 0 0 0-3 0z"/></svg>' +
          (stale ? '<b class="fo-stale-mark">?</b>' : "") + "</div>",
        iconSize: [26, 22],
        iconAnchor: [13, 11],
      }),
      zIndexOffset: 1000,
    });
    marker.stale = stale;
    marker.bindTooltip(function () {
      var fix = p.position_at ? self.formatTime(p.position_at) : self.t("crew.no_fix");
      var job = p.incident_id
        ? "<br>" + esc(self.t("crew.incident")) + " : #" + esc(p.incident_id) +
          (p.eta_at ? " · " + esc(self.t("popup.eta")) + " " + esc(self.formatTime(p.eta_at)) : "")
        : "";
      return "<b>" + esc(p.name) + "</b><br>" + esc(self.t("crew.status." + p.status)) + "<br>" +
        esc(self.t("crew.position_at")) + " : " + esc(fix) + job +
        (stale ? '<br><span class="fo-warn">' + esc(self.t("crew.stale")) + "</span>" : "");
    });
    return marker;
  };

  App.prototype.setCrews = function (features, replace) {
    var layer = this.layers.crews;
    var self = this;
    if (replace) {
      this.crews.forEach(function (marker) {
        if (layer) layer.removeLayer(marker);
      });
      this.crews.clear();
    }
    (features || []).forEach(function (f) {
      var old = self.crews.get(f.id);
      if (old && layer) layer.removeLayer(old);
      self.crews.delete(f.id);
      if (f.properties.removed) return;
      var marker = self.crewMarker(f);
      self.crews.set(f.id, marker);
      if (layer) layer.addLayer(marker);
    });
    this.updateCounters();
  };

  App.prototype.setEmergencies = function (features, replace) {
    var self = this;
    var layer = this.layers.emergencies;
    if (!layer) return;
    if (replace) layer.clearLayers();
    (features || []).forEach(function (f) {
      layer.eachLayer(function (l) {
        if (l.emergencyId === f.id) layer.removeLayer(l);
      });
      if (f.properties.removed) return;
      var area = L.geoJSON(f, { style: EMERGENCY_STYLE });
      area.emergencyId = f.id;
      area.bindPopup(function () {
        var p = f.properties;
        return '<div class="fo-popup"><h3>' + esc(p.name) + '</h3><table class="fo-table"><tr><th>' +
          self.span("emergency.hazard") + "</th><td>" + esc(p.hazard) + "</td></tr><tr><th>" +
          self.span("emergency.declared_at") + "</th><td>" + esc(self.formatTime(p.declared_at)) + "</td></tr></table></div>";
      });
      layer.addLayer(area);
    });
    this.emergencyCount = layer.getLayers().length;
  };

  // --- loading -------------------------------------------------------------------------------

  App.prototype.markReady = function () {
    if (this.ready) return;
    this.ready = true;
    window.FieldOps.readyAt = window.performance.now();
    document.documentElement.setAttribute("data-fo-ready", "1");
    document.dispatchEvent(new CustomEvent("fieldops:ready"));
  };

  App.prototype.loadInline = function (data) {
    var self = this;
    this.upsertIncidents((data.incidents && data.incidents.features) || []);
    this.setHotspots(data.hotspots);
    this.setHeat(data.heat);
    this.setCrews((data.crews && data.crews.features) || [], true);
    this.setEmergencies((data.emergencies && data.emergencies.features) || [], true);
    this.showUpdated();
    this.whenDrawn(function () {
      self.markReady();
    });
  };

  App.prototype.api = function (url) {
    var early = prefetched[url];
    if (early && early.key === this.key) {
      // Asked for while the page was still being built: use that answer, once.
      delete prefetched[url];
      return early.answer;
    }
    return getJson(url, this.key);
  };

  App.prototype.startLive = function () {
    this.key = prefetchKey || readKeyFromFragment() || storedKey();
    if (!this.key) {
      this.askKey(false);
      return;
    }
    this.loadSnapshot();
  };

  App.prototype.askKey = function (refused) {
    var self = this;
    if (document.getElementById("fo-key")) return;
    var overlay = document.createElement("div");
    overlay.id = "fo-key";
    overlay.className = "fo-key-overlay";
    overlay.innerHTML =
      '<form class="fo-key-form"><h2>' + this.span("key.title") + "</h2><p>" + this.span("key.prompt") + "</p>" +
      (refused ? '<p class="fo-warn">' + this.span("key.refused") + "</p>" : "") +
      '<input type="password" name="key" autocomplete="off" required aria-label="key">' +
      '<button type="submit" class="fo-button">' + this.span("key.submit") + "</button></form>";
    overlay.querySelector("form").addEventListener("submit", function (event) {
      event.preventDefault();
      var value = overlay.querySelector("input").value.trim();
      if (!value) return;
      self.key = value;
      try {
        window.sessionStorage.setItem(KEY_STORAGE, value);
      } catch (e) {
        /* memory only */
      }
      overlay.remove();
      self.loadSnapshot();
    });
    document.body.appendChild(overlay);
    overlay.querySelector("input").focus();
  };

  App.prototype.onAuthError = function () {
    window.clearTimeout(this.pollTimer);
    this.pollTimer = null;
    try {
      window.sessionStorage.removeItem(KEY_STORAGE);
    } catch (e) {
      /* nothing stored */
    }
    this.key = null;
    this.askKey(true);
  };

  App.prototype.onFailure = function (error, retry) {
    if (error && error.auth) return this.onAuthError();
    this.online = false;
    this.setState("state.offline");
    this.failures = (this.failures || 0) + 1;
    var self = this;
    this.pollTimer = window.setTimeout(function () {
      retry.call(self);
    }, Math.min(5000, 1000 * this.failures));
  };

  App.prototype.applyFeed = function (body, snapshot) {
    var self = this;
    this.upsertIncidents((body.incidents && body.incidents.features) || []);
    // Crews and emergency areas come whole, and only when they changed (else null).
    if (body.crews) this.setCrews(body.crews.features, true);
    if (body.emergencies) this.setEmergencies(body.emergencies.features, true);
    this.crewsVersion = body.crews_version || null;
    this.emergenciesVersion = body.emergencies_version || null;
    // Event ids a concurrent writer had taken but not committed yet: ask for them again
    // for a while, so a late commit is never skipped.
    this.gaps.forEach(function (left, id) {
      if (left <= 1) self.gaps.delete(id);
      else self.gaps.set(id, left - 1);
    });
    (body.gaps || []).forEach(function (id) {
      self.gaps.set(id, GAP_POLLS);
    });
    (body.events || []).forEach(function (e) {
      self.gaps.delete(e.id);
    });
    if (this.cursor === null || body.cursor > this.cursor) this.cursor = body.cursor;
    this.online = true;
    this.failures = 0;
    this.updatedAt = new Date();
    this.showUpdated();
    if (!snapshot && body.events && body.events.length) this.scheduleHotspots();
  };

  App.prototype.loadSnapshot = function () {
    var self = this;
    this.setState("state.loading");
    window.performance.mark("fo-snapshot-asked");
    // The state and the hot spots are fetched side by side; the state is drawn first.
    var hotspots = this.refreshHotspots();
    this.api(this.config.live.feed)
      .then(function (body) {
        window.performance.mark("fo-snapshot-received");
        self.applyFeed(body, true);
        return hotspots;
      })
      .then(function () {
        self.whenDrawn(function () {
          window.performance.mark("fo-drawn");
          self.markReady();
        });
        self.schedulePoll(self.config.live.poll_ms);
      })
      .catch(function (error) {
        self.onFailure(error, self.loadSnapshot);
      });
  };

  App.prototype.schedulePoll = function (delay) {
    var self = this;
    window.clearTimeout(this.pollTimer);
    this.pollTimer = window.setTimeout(function () {
      self.poll();
    }, delay);
  };

  App.prototype.poll = function () {
    var self = this;
    var url = this.config.live.feed + "?after=" + encodeURIComponent(this.cursor);
    if (this.gaps.size) url += "&gaps=" + Array.from(this.gaps.keys()).slice(0, 200).join(",");
    if (this.crewsVersion) url += "&crews=" + encodeURIComponent(this.crewsVersion);
    if (this.emergenciesVersion) url += "&emergencies=" + encodeURIComponent(this.emergenciesVersion);
    this.api(url)
      .then(function (body) {
        self.applyFeed(body, false);
        self.schedulePoll(body.more ? 0 : self.config.live.poll_ms);
      })
      .catch(function (error) {
        self.onFailure(error, self.poll);
      });
  };

  App.prototype.refreshHotspots = function () {
    var self = this;
    var live = this.config.live;
    this.lastHotspotFetch = Date.now();
    // Hot spots are counted even while their layer is hidden; the heat grid is only
    // fetched while its layer is on the map.
    var heat = this.layers.heat && this.map.hasLayer(this.layers.heat);
    return Promise.all([this.api(live.hotspots), heat ? this.api(live.heat) : null]).then(
      function (bodies) {
        if (bodies[0]) self.setHotspots(bodies[0]);
        if (bodies[1]) self.setHeat(bodies[1]);
        self.heatFresh = Boolean(bodies[1]);
      }
    );
  };

  App.prototype.watchHeat = function () {
    var self = this;
    var heat = this.layers.heat;
    if (!heat || !this.config.live) return;
    heat.on("add", function () {
      if (self.heatFresh || !self.key) return;
      self.api(self.config.live.heat)
        .then(function (body) {
          self.setHeat(body);
          self.heatFresh = true;
        })
        .catch(function (error) {
          if (error.auth) self.onAuthError();
        });
    });
  };

  App.prototype.scheduleHotspots = function () {
    var self = this;
    if (this.hotspotTimer) return;
    var wait = Math.max(0, this.lastHotspotFetch + this.config.live.hotspot_refresh_ms - Date.now());
    this.hotspotTimer = window.setTimeout(function () {
      self.hotspotTimer = null;
      self.refreshHotspots().catch(function (error) {
        if (error.auth) self.onAuthError();
      });
    }, wait);
  };

  App.prototype.start = function () {
    var self = this;
    if (this.layers.incidents) {
      this.layers.incidents.options.chunkProgress = function (processed, total) {
        self.onChunks(processed, total);
      };
      this.layers.incidents.on("click", function (event) {
        self.openIncidentPopup(event.layer);
      });
    }
    // Hot-spot labels shrink when the whole city is in view.
    var container = this.map.getContainer();
    var zoomed = function () {
      container.classList.toggle("fo-zoomed-out", self.map.getZoom() < 13);
    };
    this.map.on("zoomend", zoomed);
    zoomed();
    this.addControls();
    this.bindBaseLayers();
    this.watchHeat();
    this.applyLang();
    if (this.config.live) this.startLive();
    else this.loadInline(this.config.data || {});
  };

  // --- what the page and the tests can ask ---------------------------------------------------

  window.FieldOps = {
    app: null,
    readyAt: null,
    makeLayer: makeLayer,
    start: function (map, config, layers) {
      var app = new App(map, config, layers);
      window.FieldOps.app = app;
      app.start();
      return app;
    },
    stats: function () {
      var app = window.FieldOps.app;
      if (!app) return null;
      var stale = 0;
      app.crews.forEach(function (marker) {
        if (marker.stale) stale += 1;
      });
      return {
        incidents: app.incidents.size,
        markers: app.layers.incidents ? app.layers.incidents.getLayers().length : 0,
        hotspots: app.hotspotCount,
        crews: app.crews.size,
        stale_crews: stale,
        emergencies: app.emergencyCount,
        cursor: app.cursor,
        lang: app.lang,
        ready: app.ready,
      };
    },
    hasIncident: function (id) {
      var app = window.FieldOps.app;
      var entry = app && app.incidents.get(id);
      return Boolean(entry && app.layers.incidents && app.layers.incidents.hasLayer(entry.marker));
    },
    openIncident: function (id) {
      var app = window.FieldOps.app;
      var entry = app && app.incidents.get(id);
      if (!entry) return false;
      app.layers.incidents.zoomToShowLayer(entry.marker, function () {
        app.openIncidentPopup(entry.marker);
      });
      return true;
    },
    setLang: function (lang) {
      if (window.FieldOps.app) window.FieldOps.app.setLang(lang);
    },
  };
})();
