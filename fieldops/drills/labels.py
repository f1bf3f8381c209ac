"""The after-action report's words, in French and English (shown together: "fr / en")."""

from __future__ import annotations

# report.json's response-time stages: from the first report to each step of the incident.
STAGES = {
    "report_to_dispatch": "dispatched_at",
    "report_to_acknowledge": "acknowledged_at",
    "report_to_on_scene": "on_scene_at",
    "report_to_resolved": "resolved_at",
}
# ... and each interval of the chain report → dispatch → acknowledge → on scene → resolved.
INTERVALS = {
    "dispatch_to_acknowledge": ("dispatched_at", "acknowledged_at"),
    "acknowledge_to_on_scene": ("acknowledged_at", "on_scene_at"),
    "on_scene_to_resolved": ("on_scene_at", "resolved_at"),
}

LABELS: dict[str, tuple[str, str]] = {
    "report_to_dispatch": ("Signalement → affectation", "Report → dispatch"),
    "report_to_acknowledge": ("Signalement → accusé", "Report → acknowledge"),
    "report_to_on_scene": ("Signalement → sur place", "Report → on scene"),
    "report_to_resolved": ("Signalement → résolu", "Report → resolved"),
    "dispatch_to_acknowledge": ("Affectation → accusé", "Dispatch → acknowledge"),
    "acknowledge_to_on_scene": ("Accusé → sur place", "Acknowledge → on scene"),
    "on_scene_to_resolved": ("Sur place → résolu", "On scene → resolved"),
    "title": ("Bilan après exercice", "After-action report"),
    "exercise": ("EXERCICE", "EXERCISE"),
    "counts": ("Volumes", "Counts"),
    "targets": ("Cibles", "Targets"),
    "met": ("atteinte", "met"),
    "missed": ("manquée", "missed"),
    "margin": ("marge", "margin"),
    "no_data": ("aucune donnée", "no data"),
    "nfpa": (
        "NFPA 1225 : 90 % des appels d'urgence (priorité 1) affectés en 60 s",
        "NFPA 1225: 90 % of emergency calls (priority 1) dispatched within 60 s",
    ),
    "response": ("Délais (s) par priorité", "Response times (s) by priority"),
    "by_district": ("Délais (s) par arrondissement", "Response times (s) by district"),
    "percentiles": ("P50 / P90 / P95 (n)", "P50 / P90 / P95 (n)"),
    "escalations": ("Escalades", "Escalations"),
    "notifications": ("Avis", "Notifications"),
    "crews": ("Équipes : taux d'occupation", "Crews: utilisation"),
    "replay": ("Reprise de l'historique 311", "311 history replay"),
    "load": ("Charge", "Load"),
    "distributions": ("Distribution des délais", "Response-time distributions"),
    "map": ("Carte", "Map"),
    "open_incidents": ("Incidents ouverts", "open incidents"),
    "busy_crews": ("Équipes occupées", "busy crews"),
    "hours": ("Heures depuis le début", "hours since start"),
    "count": ("Nombre", "count"),
    "crew_tracks": ("Trajets des équipes", "Crew tracks"),
    "simulated": ("simulation", "simulation"),
    "written": ("écrit", "written"),
    "priority": ("priorité", "priority"),
    "all": ("toutes", "all"),
}


def both(key: str) -> str:
    """``"français / English"`` for a label key."""
    fr, en = LABELS[key]
    return fr if fr == en else f"{fr} / {en}"


def one(key: str, lang: str) -> str:
    """The label in one language (``"fr"`` or ``"en"``)."""
    fr, en = LABELS[key]
    return en if lang == "en" else fr
