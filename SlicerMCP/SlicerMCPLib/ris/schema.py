"""The RIS schema as numbered migrations, written once for both SQL dialects.

Each migration is a list of statements with `{placeholders}` for the types that differ
between SQLite and MySQL/MariaDB (auto-increment keys, indexable text). The store applies
every migration above the recorded `schema_version` in one transaction on start.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    """The few SQL spellings that differ between the two back ends."""

    name: str
    pk: str  # auto-increment integer primary key
    key: str  # short text usable in UNIQUE / INDEX
    text: str  # long text, never indexed
    table_suffix: str = ""


SQLITE = Dialect("sqlite", "INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT", "TEXT")
MYSQL = Dialect(
    "mysql",
    "INTEGER PRIMARY KEY AUTO_INCREMENT",
    "VARCHAR(128)",
    "TEXT",
    " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
)

VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at {key} NOT NULL){ts}"
)

MIGRATIONS: list[list[str]] = [
    # 1: reference data, people, procedures, orders, worklist, MPPS
    [
        "CREATE TABLE modalities (code {key} PRIMARY KEY, description {key} NOT NULL){ts}",
        "CREATE TABLE body_parts (code {key} PRIMARY KEY, description {key} NOT NULL){ts}",
        """CREATE TABLE patients (
            id {pk}, mrn {key} NOT NULL UNIQUE, family_name {key} NOT NULL, given_name {key} NOT NULL,
            birth_date {key}, sex {key}, created_at {key} NOT NULL){ts}""",
        """CREATE TABLE providers (
            id {pk}, family_name {key} NOT NULL, given_name {key} NOT NULL, role {key} NOT NULL){ts}""",
        """CREATE TABLE encounters (
            id {pk}, patient_id INTEGER NOT NULL REFERENCES patients(id), encounter_class {key} NOT NULL,
            location {key}, started_at {key} NOT NULL){ts}""",
        """CREATE TABLE procedures (
            code {key} PRIMARY KEY, description {key} NOT NULL,
            modality {key} NOT NULL REFERENCES modalities(code),
            body_part {key} NOT NULL REFERENCES body_parts(code),
            views {key} NOT NULL, image_count INTEGER NOT NULL){ts}""",
        """CREATE TABLE orders (
            id {pk}, accession_number {key} NOT NULL UNIQUE,
            patient_id INTEGER NOT NULL REFERENCES patients(id),
            encounter_id INTEGER REFERENCES encounters(id),
            procedure_code {key} NOT NULL REFERENCES procedures(code),
            referring_provider_id INTEGER REFERENCES providers(id),
            priority {key} NOT NULL, reason {text}, status {key} NOT NULL,
            requested_procedure_id {key} NOT NULL, ordered_at {key} NOT NULL){ts}""",
        """CREATE TABLE mwl_entries (
            id {pk}, order_id INTEGER NOT NULL REFERENCES orders(id),
            active_order_id INTEGER UNIQUE,
            study_instance_uid {key} NOT NULL UNIQUE, sps_id {key} NOT NULL,
            station_aet {key} NOT NULL, station_name {key}, modality {key} NOT NULL,
            sps_date {key} NOT NULL, sps_time {key} NOT NULL, performing_physician {key},
            status {key} NOT NULL, created_at {key} NOT NULL, updated_at {key} NOT NULL){ts}""",
        "CREATE INDEX ix_mwl_sched ON mwl_entries (sps_date, station_aet, modality)",
        """CREATE TABLE mpps (
            sop_instance_uid {key} PRIMARY KEY, mwl_id INTEGER REFERENCES mwl_entries(id),
            status {key} NOT NULL, station_aet {key}, modality {key}, study_instance_uid {key},
            start_date {key}, start_time {key}, end_date {key}, end_time {key},
            series_json {text}, created_at {key} NOT NULL, updated_at {key} NOT NULL){ts}""",
        """CREATE TABLE mpps_history (
            id {pk}, sop_instance_uid {key} NOT NULL REFERENCES mpps(sop_instance_uid),
            status {key} NOT NULL, changed_at {key} NOT NULL, note {text}){ts}""",
    ],
    # 2: the reports written for an order (FHIR DiagnosticReport references), shown with the order
    [
        """CREATE TABLE order_reports (
            id {pk}, order_id INTEGER NOT NULL REFERENCES orders(id), reference {key} NOT NULL,
            status {key} NOT NULL, conclusion {text}, sr_sop_instance_uid {key}, recorded_at {key} NOT NULL){ts}""",
        "CREATE INDEX ix_order_reports ON order_reports (order_id)",
    ],
    # 3: everything an order produced outside the RIS, one row each: SEG/SR stored in a PACS (SOP
    # Instance UID) and DiagnosticReports written to FHIR (reference); migration 2's reports move here
    [
        """CREATE TABLE order_links (
            id {pk}, order_id INTEGER NOT NULL REFERENCES orders(id), kind {key} NOT NULL,
            identifier {key} NOT NULL, study_instance_uid {key}, series_instance_uid {key}, location {key},
            status {key}, conclusion {text}, derived_from {key}, recorded_at {key} NOT NULL,
            UNIQUE (order_id, kind, identifier)){ts}""",
        """INSERT INTO order_links (order_id, kind, identifier, status, conclusion, derived_from, recorded_at)
            SELECT r.order_id, 'DiagnosticReport', r.reference, r.status, r.conclusion, r.sr_sop_instance_uid,
                   r.recorded_at
            FROM order_reports r
            WHERE r.id = (SELECT MAX(d.id) FROM order_reports d
                          WHERE d.order_id = r.order_id AND d.reference = r.reference)
            ORDER BY r.id""",
        "DROP TABLE order_reports",
    ],
]

#: CT procedures the virtual CT performs (added by migration 2: its rows are in MIGRATION_DATA)
CT_PROCEDURES = [
    ("CT-ABD-LESION", "CT Abdomen lesion volumetry", "CT", "ABDOMEN", "AXIAL", 48),
]


def render(statement: str, dialect: Dialect) -> str:
    return statement.format(pk=dialect.pk, key=dialect.key, text=dialect.text, ts=dialect.table_suffix)


# Reference data, loaded by migration 1 (codes are DICOM defined terms).
MODALITIES = [
    ("CR", "Computed Radiography"),
    ("DX", "Digital Radiography"),
    ("CT", "Computed Tomography"),
    ("MR", "Magnetic Resonance"),
    ("US", "Ultrasound"),
]

BODY_PARTS = [
    ("CHEST", "Chest"),
    ("ABDOMEN", "Abdomen"),
    ("PELVIS", "Pelvis"),
    ("HAND", "Hand"),
    ("WRIST", "Wrist"),
    ("ELBOW", "Elbow"),
    ("SHOULDER", "Shoulder"),
    ("KNEE", "Knee"),
    ("ANKLE", "Ankle"),
    ("FOOT", "Foot"),
    ("LSPINE", "Lumbar spine"),
    ("CSPINE", "Cervical spine"),
    ("SKULL", "Skull"),
    ("HIP", "Hip"),
]

# The 14 CR/XR procedures: code, description, modality, body part, views (View Position), image count.
PROCEDURES = [
    ("XR-CHEST-2V", "XR Chest PA and lateral", "CR", "CHEST", "PA,LL", 2),
    ("XR-CHEST-1V", "XR Chest AP portable", "CR", "CHEST", "AP", 1),
    ("XR-ABD-1V", "XR Abdomen supine", "CR", "ABDOMEN", "AP", 1),
    ("XR-ABD-2V", "XR Abdomen supine and erect", "CR", "ABDOMEN", "AP,AP", 2),
    ("XR-PELVIS-1V", "XR Pelvis AP", "CR", "PELVIS", "AP", 1),
    ("XR-HAND-3V", "XR Hand 3 views", "CR", "HAND", "PA,LLO,LL", 3),
    ("XR-WRIST-3V", "XR Wrist 3 views", "CR", "WRIST", "PA,LLO,LL", 3),
    ("XR-ELBOW-2V", "XR Elbow 2 views", "CR", "ELBOW", "AP,LL", 2),
    ("XR-SHOULDER-2V", "XR Shoulder 2 views", "CR", "SHOULDER", "AP,LL", 2),
    ("XR-KNEE-2V", "XR Knee 2 views", "CR", "KNEE", "AP,LL", 2),
    ("XR-ANKLE-3V", "XR Ankle 3 views", "CR", "ANKLE", "AP,LLO,LL", 3),
    ("XR-FOOT-3V", "XR Foot 3 views", "CR", "FOOT", "PA,LLO,LL", 3),
    ("XR-LSPINE-2V", "XR Lumbar spine AP and lateral", "CR", "LSPINE", "AP,LL", 2),
    ("XR-CSPINE-3V", "XR Cervical spine 3 views", "CR", "CSPINE", "AP,LL,LLO", 3),
]

PROCEDURE_INSERT = "INSERT INTO procedures (code, description, modality, body_part, views, image_count) VALUES (?, ?, ?, ?, ?, ?)"
REFERENCE_DATA = [
    ("INSERT INTO modalities (code, description) VALUES (?, ?)", MODALITIES),
    ("INSERT INTO body_parts (code, description) VALUES (?, ?)", BODY_PARTS),
    (PROCEDURE_INSERT, PROCEDURES),
]
#: rows each migration loads after its statements
MIGRATION_DATA = {1: REFERENCE_DATA, 2: [(PROCEDURE_INSERT, CT_PROCEDURES)]}
