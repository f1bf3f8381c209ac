// The crew's phone page: its assignments, a small map, and the buttons to move them on.
(function () {
  "use strict";
  const LABELS = {
    fr: {
      key: "Clé d'équipe", connect: "Se connecter", none: "Aucune affectation pour l'instant.",
      accept: "Accepter", decline: "Refuser", en_route: "En route", on_scene: "Sur place",
      done: "Terminé", reason: "Raison du refus ?", note: "Note de fermeture ?",
      priority: "Priorité", eta: "Arrivée estimée", changed: "Cette affectation a changé : ",
      offline: "Hors ligne : nouvel essai bientôt", bad_key: "Clé refusée",
    },
    en: {
      key: "Crew key", connect: "Connect", none: "No assignments yet.",
      accept: "Accept", decline: "Decline", en_route: "En route", on_scene: "On scene",
      done: "Done", reason: "Why decline?", note: "Closing note?",
      priority: "Priority", eta: "ETA", changed: "This assignment changed: ",
      offline: "Offline: retrying soon", bad_key: "Key refused",
    },
  };
  // What each assignment step may do next, in the order the buttons appear.
  const NEXT = {
    pending: ["accept", "decline"],
    accepted: ["en_route", "decline"],
    en_route: ["on_scene"],
    on_scene: ["done"],
  };
  let lang = sessionStorage.getItem("fieldops.lang") || "fr";
  const t = (k) => LABELS[lang][k] || k;
  const $ = (id) => document.getElementById(id);

  const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromHash) { sessionStorage.setItem("fieldops.crewKey", fromHash); history.replaceState(null, "", location.pathname); }
  let key = sessionStorage.getItem("fieldops.crewKey");

  const map = L.map("map", { zoomControl: false, zoomAnimation: false, minZoom: 9, maxZoom: 18 })
    .setView([45.52, -73.6], 11);
  const markers = L.layerGroup().addTo(map);
  // No tiles: the districts drawn from our own API are the base map (works offline).
  fetch("/api/v1/districts.geojson")
    .then((r) => r.json())
    .then((g) => L.geoJSON(g, { style: { color: "#0b3d62", weight: 1, fillOpacity: 0.04 } }).addTo(map))
    .catch(() => {});

  function say(text) { $("status").textContent = text || ""; }

  async function api(method, path, body) {
    const response = await fetch(path, {
      method,
      headers: { "Authorization": "Bearer " + key, "Content-Type": "application/json" },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (response.status === 401) { showLogin(); throw new Error(t("bad_key")); }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) { throw Object.assign(new Error(data.detail || response.statusText), { status: response.status }); }
    return data;
  }

  function label() {
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    $("lang").textContent = lang === "fr" ? "EN" : "FR";
    document.documentElement.lang = lang;
  }

  function showLogin() { $("login").hidden = false; }

  function render(items) {
    const list = $("assignments");
    list.replaceChildren();
    markers.clearLayers();
    $("empty").hidden = items.length > 0;
    for (const a of items) {
      const li = document.createElement("li");
      li.className = "p" + a.priority;
      li.dataset.assignment = a.id;
      const h = document.createElement("h2");
      h.textContent = `#${a.incident_id} · ${a.service_code}`;
      const meta = document.createElement("div");
      meta.className = "meta";
      meta.textContent = `${t("priority")} ${a.priority} · ${a.status} · ${t("eta")} ${Math.round(a.eta_s / 60)} min · ${a.address || ""}`;
      const actions = document.createElement("div");
      actions.className = "actions";
      for (const step of NEXT[a.status] || []) {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = t(step);
        b.dataset.action = step;
        if (step !== "decline") b.className = "primary";
        b.addEventListener("click", () => act(a, step));
        actions.append(b);
      }
      li.append(h, meta, actions);
      list.append(li);
      L.circleMarker([a.lat, a.lon], { radius: 8 }).bindTooltip(`#${a.incident_id}`).addTo(markers);
    }
    if (items.length === 1) map.setView([items[0].lat, items[0].lon], 15);
    else if (items.length) map.fitBounds(L.featureGroup(markers.getLayers()).getBounds().pad(0.3), { maxZoom: 15 });
  }

  async function act(a, step) {
    let note = "";
    if (step === "decline") { note = prompt(t("reason")) || ""; if (!note.trim()) return; }
    if (step === "done") { note = prompt(t("note")) || ""; }
    try {
      await api("POST", `/api/v1/crew/assignments/${a.id}/${step}`, { version: a.version, note });
      say("");
    } catch (e) {
      say(e.status === 409 ? t("changed") + e.message : e.message);
    }
    refresh();
  }

  async function refresh() {
    if (!key) { showLogin(); return; }
    try {
      render(await api("GET", "/api/v1/crew/assignments"));
      $("login").hidden = true;
    } catch (e) {
      say(e.message || t("offline"));
    }
  }

  $("save-key").addEventListener("click", () => {
    key = $("key").value.trim();
    sessionStorage.setItem("fieldops.crewKey", key);
    refresh();
  });
  $("lang").addEventListener("click", () => {
    lang = lang === "fr" ? "en" : "fr";
    sessionStorage.setItem("fieldops.lang", lang);
    label();
    refresh();
  });
  label();
  refresh();
  setInterval(refresh, 5000);
})();
