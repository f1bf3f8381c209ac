"""Every word a map shows, in French and English (the page switches between them)."""

from __future__ import annotations

from typing import Final, Literal

Lang = Literal["fr", "en"]
LANGS: Final = ("fr", "en")

# key: (French, English)
_LABELS: Final[dict[str, tuple[str, str]]] = {
    "title": ("FieldOps — carte des opérations", "FieldOps — operations map"),
    "lang.switch": ("Langue", "Language"),
    # layers
    "layer.base": ("Plan de base (couches locales)", "Base map (local layers)"),
    "layer.tiles": ("Tuiles", "Tiles"),
    "layer.districts": ("Arrondissements : incidents ouverts", "Districts: open incidents"),
    "layer.incidents": ("Incidents", "Incidents"),
    "layer.hotspots": ("Points chauds", "Hot spots"),
    "layer.heat": ("Carte de chaleur", "Heat map"),
    "layer.crews": ("Équipes", "Crews"),
    "layer.emergencies": ("Zones d'urgence déclarées", "Declared emergency areas"),
    "layer.flood_zones": (
        "Zones inondables (vulnérabilité aux crues)",
        "Flood zones (vulnerability)",
    ),
    "layer.metro_lines": ("Lignes de métro", "Metro lines"),
    "layer.metro_stations": ("Stations et accès de métro", "Metro stations and entrances"),
    # legend
    "legend.title": ("Légende", "Legend"),
    "legend.priority": ("Priorité (couleur)", "Priority (colour)"),
    "legend.status": ("Statut (forme)", "Status (shape)"),
    "legend.hotspot": ("Point chaud (nombre d'incidents)", "Hot spot (incident count)"),
    "legend.crews": ("Équipes (statut)", "Crews (status)"),
    "legend.emergency": ("Zone d'urgence déclarée", "Declared emergency area"),
    "legend.districts": ("Incidents ouverts par arrondissement", "Open incidents per district"),
    "legend.flood": ("Vulnérabilité aux crues", "Flood vulnerability"),
    "legend.metro": ("Métro", "Metro"),
    "legend.cluster": (
        "Groupe d'incidents (couleur : plus urgent)",
        "Incident cluster (colour: most urgent)",
    ),
    "priority.1": ("1 – vitale", "1 – life safety"),
    "priority.2": ("2 – urgente", "2 – urgent"),
    "priority.3": ("3 – haute", "3 – high"),
    "priority.4": ("4 – normale", "4 – normal"),
    "priority.5": ("5 – routine", "5 – routine"),
    "status.open": ("Ouvert", "Open"),
    "status.assigned": ("Assigné", "Assigned"),
    "status.acknowledged": ("Pris en charge", "Acknowledged"),
    "status.en_route": ("En route", "En route"),
    "status.on_scene": ("Sur place", "On scene"),
    "status.resolved": ("Résolu", "Resolved"),
    "status.cancelled": ("Annulé", "Cancelled"),
    "crew.status.available": ("Disponible", "Available"),
    "crew.status.assigned": ("Assignée", "Assigned"),
    "crew.status.en_route": ("En route", "En route"),
    "crew.status.on_scene": ("Sur place", "On scene"),
    "crew.status.off_duty": ("Hors service", "Off duty"),
    "crew.stale": ("Position périmée", "Stale position"),
    "crew.position_at": ("Position reçue", "Position received"),
    "crew.no_fix": ("aucune (au dépôt)", "none (at the depot)"),
    "crew.incident": ("Incident assigné", "Assigned incident"),
    "flood.Mineure": ("Mineure", "Minor"),
    "flood.Modérée": ("Modérée", "Moderate"),
    "flood.Élevée": ("Élevée", "High"),
    "flood.Majeure": ("Majeure", "Major"),
    "metro.station": ("Station", "Station"),
    "metro.entrance": ("Accès (édicule)", "Entrance"),
    # counters and connection state
    "count.incidents": ("Incidents ouverts", "Open incidents"),
    "count.crews": ("Équipes", "Crews"),
    "count.hotspots": ("Points chauds", "Hot spots"),
    "state.live": ("En direct", "Live"),
    "state.updated": ("Mis à jour", "Updated"),
    "state.offline": ("Connexion perdue, nouvel essai…", "Connection lost, retrying…"),
    "state.as_of": ("État au", "State as of"),
    "state.loading": ("Chargement…", "Loading…"),
    # incident popup
    "popup.incident": ("Incident", "Incident"),
    "popup.service": ("Service", "Service"),
    "popup.priority": ("Priorité", "Priority"),
    "popup.status": ("Statut", "Status"),
    "popup.reports": ("Signalements", "Reports"),
    "popup.district": ("Arrondissement", "District"),
    "popup.address": ("Adresse", "Address"),
    "popup.crew": ("Équipe assignée", "Assigned crew"),
    "popup.eta": ("Arrivée prévue", "ETA"),
    "popup.none": ("aucune", "none"),
    "popup.events": ("Événements récents", "Recent events"),
    "popup.no_events": ("Aucun événement", "No events"),
    "popup.loading": ("Chargement…", "Loading…"),
    "popup.failed": ("Détails indisponibles", "Details unavailable"),
    "popup.recommendations": ("Recommandations d'équipes", "Crew recommendations"),
    "popup.no_recommendations": ("Aucune équipe disponible", "No crew available"),
    "popup.recommendations_soon": (
        "Recommandations d'équipes : bientôt disponibles",
        "Crew recommendations: coming soon",
    ),
    "event.opened": ("Ouvert", "Opened"),
    "event.report_merged": ("Signalement ajouté", "Report merged"),
    "event.status_changed": ("Statut changé", "Status changed"),
    "event.priority_changed": ("Priorité changée", "Priority changed"),
    "event.assigned": ("Équipe assignée", "Crew assigned"),
    "event.reassigned": ("Équipe remplacée", "Crew reassigned"),
    "event.crew_withdrawn": ("Équipe retirée", "Crew withdrawn"),
    "event.declined": ("Refusé par l'équipe", "Declined by the crew"),
    "event.crew_accept": ("Accepté par l'équipe", "Accepted by the crew"),
    "event.crew_en_route": ("Équipe en route", "Crew en route"),
    "event.crew_on_scene": ("Équipe sur place", "Crew on scene"),
    "event.crew_done": ("Travaux terminés", "Work done"),
    "event.escalated": ("Escaladé", "Escalated"),
    "event.snoozed": ("Escalade reportée", "Escalation snoozed"),
    # hot spot popup
    "hotspot.title": ("Point chaud", "Hot spot"),
    "hotspot.members": ("Incidents", "Incidents"),
    "hotspot.reports": ("Signalements", "Reports"),
    "hotspot.dominant": ("Groupe dominant", "Dominant group"),
    "hotspot.groups": ("Par groupe", "By group"),
    "hotspot.first": ("Premier signalement", "First report"),
    "hotspot.last": ("Dernier signalement", "Last report"),
    "emergency.hazard": ("Aléa", "Hazard"),
    "emergency.declared_at": ("Déclarée le", "Declared"),
    # service groups (city.toml)
    "group.water": ("Eau", "Water"),
    "group.trees": ("Arbres", "Trees"),
    "group.wildlife": ("Faune", "Wildlife"),
    "group.housing_health": ("Salubrité des logements", "Housing health"),
    "group.sanitation": ("Propreté", "Sanitation"),
    "group.transit": ("Transport collectif", "Transit"),
    "group.traffic": ("Circulation", "Traffic"),
    "group.roads": ("Voirie", "Roads"),
    "group.winter": ("Hiver", "Winter"),
    # dispatcher key form
    "key.title": ("Clé de répartiteur", "Dispatcher key"),
    "key.prompt": (
        "Entrez votre clé d'API de répartiteur (gardée pour cet onglet seulement).",
        "Enter your dispatcher API key (kept for this tab only).",
    ),
    "key.submit": ("Ouvrir la carte", "Open the map"),
    "key.refused": ("Clé refusée : vérifiez-la.", "Key refused: check it."),
    "attribution": (
        "Données : Ville de Montréal (CC-BY 4.0) ; Société de transport de Montréal (CC-BY 4.0)",
        "Data: Ville de Montréal (CC-BY 4.0); Société de transport de Montréal (CC-BY 4.0)",
    ),
}

LABELS: Final[dict[str, dict[str, str]]] = {
    lang: {key: pair[index] for key, pair in _LABELS.items()} for index, lang in enumerate(LANGS)
}


def label(key: str, lang: Lang) -> str:
    """The label of ``key`` in ``lang`` (the key itself when there is none)."""
    return LABELS[lang].get(key, key)
