"""A realistic demo set: patients (one with a non-ASCII name), providers, encounters, orders
across the 14 procedures, and a few of them scheduled on today's worklist."""

from __future__ import annotations

import logging
from datetime import datetime

from .store import RisStore

log = logging.getLogger(__name__)

PATIENTS = [
    ("MRN1001", "Anderson", "Mary", "19580312", "F"),
    ("MRN1002", "Okafor", "Chinedu", "19790721", "M"),
    ("MRN1003", "Müller", "Jürgen", "19651105", "M"),
    ("MRN1004", "Nguyen", "Linh", "19920214", "F"),
    ("MRN1005", "García", "José", "19470930", "M"),
    ("MRN1006", "Smith", "Robert", "20010618", "M"),
    ("MRN1007", "Kowalski", "Anna", "19860403", "F"),
    ("MRN1008", "Johansson", "Erik", "19731227", "M"),
    ("MRN1009", "Patel", "Priya", "19990809", "F"),
    ("MRN1010", "Brown", "James", "19550122", "M"),
    ("MRN1011", "Dubois", "Claire", "20120530", "F"),
    ("MRN1012", "Tanaka", "Hiroshi", "19681011", "M"),
]

PROVIDERS = [
    ("House", "Gregory", "referring"),
    ("Grey", "Meredith", "referring"),
    ("Carter", "John", "referring"),
    ("Quinn", "Michaela", "radiologist"),
]

# (patient index, procedure, priority, reason, schedule today at HH:MM or None). Order 1 is left
# unscheduled so dicom-mcp's documented first call, create_mwl_from_order(order_id=1), works.
ORDERS = [
    (0, "XR-CHEST-2V", "ROUTINE", "Cough for three weeks", None),
    (1, "XR-KNEE-2V", "ROUTINE", "Knee pain after fall", "09:00"),
    (2, "XR-CHEST-1V", "STAT", "Line placement check", "09:15"),
    (3, "XR-WRIST-3V", "HIGH", "Suspected scaphoid fracture", "10:00"),
    (4, "XR-PELVIS-1V", "ROUTINE", "Hip pain", "10:30"),
    (5, "XR-ANKLE-3V", "HIGH", "Inversion injury", "11:00"),
    (6, "XR-HAND-3V", "ROUTINE", "Rheumatoid arthritis follow-up", None),
    (7, "XR-LSPINE-2V", "ROUTINE", "Low back pain", None),
    (8, "XR-FOOT-3V", "ROUTINE", "Forefoot pain", None),
    (9, "XR-ABD-2V", "HIGH", "Suspected bowel obstruction", None),
    (10, "XR-ELBOW-2V", "HIGH", "Fall on outstretched hand", None),
    (11, "XR-SHOULDER-2V", "ROUTINE", "Reduced range of motion", None),
    (0, "XR-CSPINE-3V", "ROUTINE", "Neck pain", "08:30"),
    (3, "XR-ABD-1V", "ROUTINE", "Constipation", None),
]


def seed(store: RisStore, station_aet: str = "VIRTUALCR", station_name: str = "VCR01") -> dict[str, int]:
    """Fill an empty database; returns how many records of each kind were added."""
    if not store.is_empty():
        log.info("RIS database already holds patients; seeding skipped")
        return {"patients": 0, "orders": 0, "mwl_entries": 0}
    patients = [store.add_patient(*p) for p in PATIENTS]
    providers = [store.add_provider(*p) for p in PROVIDERS]
    today = datetime.now().replace(second=0, microsecond=0)
    scheduled = 0
    for n, (pi, code, priority, reason, at) in enumerate(ORDERS):
        encounter = store.add_encounter(
            patients[pi].id, "AMB" if priority == "ROUTINE" else "EMER", "Radiology"
        )
        order = store.create_order(
            patients[pi].mrn,
            code,
            priority=priority,
            reason=reason,
            referring_provider_id=providers[n % 3],
            encounter_id=encounter,
        )
        if at:
            hh, mm = (int(x) for x in at.split(":"))
            when = today.replace(hour=hh, minute=mm)
            store.create_mwl(
                order.id,
                station_aet,
                when,
                station_name=station_name,
                performing_physician="Quinn^Michaela",
            )
            scheduled += 1
    log.info("RIS seeded: %d patients, %d orders, %d scheduled", len(patients), len(ORDERS), scheduled)
    return {"patients": len(patients), "orders": len(ORDERS), "mwl_entries": scheduled}
