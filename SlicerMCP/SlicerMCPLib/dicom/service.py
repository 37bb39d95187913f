"""DicomService: the configured nodes, the current one, and the blocking DICOM operations.

Made on first use through `services.domain(DicomService)`. Every method blocks (network,
disk, decoding) and is meant to run in a worker thread; nothing here touches the scene.
"""

from __future__ import annotations

import functools
import io
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pydicom

from ..core.breaker import BreakerRegistry, CircuitBreaker
from ..core.config import Config
from ..core.domain_config import DicomNode, RetrieveMethod
from ..core.errors import ErrorCode, InvalidParameter, SlicerMCPError
from ..core.localhost import private_dir
from ..core.progress import Progress, counted
from ..core.scene_backend import VolumeArray
from .associations import GuardedNode, echo, node_label
from .export import volume_to_datasets
from .loader import SeriesCollector
from .models import (
    DicomNodeInfo,
    DicomNodeList,
    EchoResult,
    MoveResult,
    PdfText,
    QueryLevel,
    QueryResult,
    RetrieveResult,
    SendResult,
    SkippedSeries,
)
from .move import Target, move
from .pdf import pdf_text
from .query import find
from .retrieve import MAX_INSTANCES, Arrivals, Expected, choose_method, expected_instances, retrieve
from .send import send
from .storage_scp import StorageScp
from .volume import Allocate, LoadedVolume, NotAVolume

log = logging.getLogger(__name__)

# (what arrived, the node's instance count or None) -> the expected list it stands for, or None
Vouch = Callable[[Mapping[str, Path | bytes], int | None], Expected | None]


@dataclass
class DecodedSeries:
    series_uid: str
    loaded: LoadedVolume


class DicomService:
    """One per server: knows the nodes, the calling AE, our Storage SCP and where files go."""

    def __init__(self, config: Config):
        self._breakers = BreakerRegistry(config.breaker)
        self.nodes: dict[str, DicomNode] = {  # each bound to its peer's breaker (associations.py)
            name: GuardedNode.bind(
                node, self._breakers.get(f"DICOM node {node_label(node, name)}", (node.host, node.port))
            )
            for name, node in config.nodes.items()
        }
        self.calling_aet = config.calling_aet
        self._current = config.current_node or (next(iter(self.nodes)) if len(self.nodes) == 1 else None)
        self.scp = StorageScp(config.storage_scp)
        self._own_storage: Path | None = None
        self._storage = Path(config.dicom_storage_dir) if config.dicom_storage_dir else None
        self._lock = threading.Lock()
        # series this session minted (SEG, SR, images made for them) and stored, by (node, series)
        self._stored: dict[tuple[str, str], Expected] = {}

    # -- nodes -------------------------------------------------------------------------------------

    @property
    def current(self) -> str | None:
        """The node a call without a node name uses (switch_dicom_node changes it)."""
        return self._current

    def node(self, name: str | None = None) -> tuple[str, DicomNode]:
        """The named node, or the current one; INVALID_PARAMETER says which names exist."""
        name = name or self._current
        if not self.nodes:
            raise SlicerMCPError(
                "no DICOM nodes are configured; add them under 'nodes:' in the config YAML",
                code=ErrorCode.CONFIG_ERROR,
            )
        if name is None:
            raise InvalidParameter(
                f"no current DICOM node; choose one with switch_dicom_node ({', '.join(sorted(self.nodes))})",
                details={"nodes": sorted(self.nodes)},
            )
        if name not in self.nodes:
            raise InvalidParameter(
                f"unknown DICOM node {name!r}; configured nodes: {', '.join(sorted(self.nodes))}",
                details={"nodes": sorted(self.nodes)},
            )
        return name, self.nodes[name]

    def breakers(self) -> list[CircuitBreaker]:
        """One per configured node (`slicer://status`)."""
        return self._breakers.breakers()

    def list_nodes(self) -> DicomNodeList:
        return DicomNodeList(
            current_node=self._current,
            calling_aet=self.calling_aet,
            nodes=[
                DicomNodeInfo(
                    name=name,
                    description=n.description,
                    ae_title=n.ae_title,
                    host=n.host,
                    port=n.port,
                    dicomweb_url=n.dicomweb_url,
                    retrieve_method=choose_method(n),
                    current=name == self._current,
                )
                for name, n in self.nodes.items()
            ],
        )

    def switch(self, name: str) -> str:
        self.node(name)
        with self._lock:
            self._current = name
        log.info("current DICOM node is now %s", name)
        return name

    def verify(self, name: str | None = None) -> EchoResult:
        """C-ECHO the named node, or the current one."""
        name, node = self.node(name)
        return echo(node, self.calling_aet, name)

    # -- query -------------------------------------------------------------------------------------

    def query(
        self,
        level: QueryLevel,
        attributes: list[str],
        filters: dict[str, str],
        limit: int,
        on_match: Callable[[int], None] | None = None,
    ) -> QueryResult:
        name, node = self.node()
        return find(
            node, self.calling_aet, level, attributes, filters, limit=limit, node_name=name, on_match=on_match
        )

    # -- results this session stored ---------------------------------------------------------------

    def note_stored(self, node_name: str, instances: dict[str, tuple[str, str]]) -> None:
        """Remember instances of series this session minted that `node_name` listed after storing:
        SOP instance -> (series, SOP class). Such a series holds what we sent and nothing else (no one
        else has its UID), so retrieving it needs no instance-level C-FIND to know what must arrive."""
        with self._lock:
            for sop_uid, (series, sop_class) in instances.items():
                known = self._stored.setdefault((node_name, series), Expected())
                known.instances[sop_uid] = (series, sop_class)

    def stored_series(self, target: Target, node_name: str | None = None) -> Expected | None:
        """What must arrive when retrieving one of our stored series from the node (a copy), else None."""
        if not target.series_uid or target.sop_uid:
            return None
        name = node_name or self._current
        with self._lock:
            known = self._stored.get((name or "", target.series_uid))
            return Expected(dict(known.instances)) if known is not None else None

    # -- retrieve and load -------------------------------------------------------------------------

    def storage_dir(self) -> Path:
        """Where retrieve_* keeps files: the configured folder, else a temp folder removed at close."""
        if self._storage is not None:
            return self._storage
        with self._lock:
            if self._own_storage is None:
                self._own_storage = Path(tempfile.mkdtemp(prefix="slicer-mcp-dicom-"))
            return self._own_storage

    def _fetch(
        self,
        target: Target,
        directory: Path | None,
        method: RetrieveMethod | None,
        progress: Progress | None,
        expected: Expected | None = None,
        on_item: Callable[[str, Path | bytes], None] | None = None,
        transferred: Callable[[], None] | None = None,
        on_expected: Callable[[Expected], None] | None = None,
        early: Callable[[DicomNode, str], int | None] | None = None,
        vouch: Vouch | None = None,
    ) -> tuple[RetrieveMethod, Expected, dict[str, Path | bytes]]:
        """Retrieve into `directory`, or into memory when it is None (nothing touches the disk).

        `early` runs alongside the transfer (a series-size query; its answer goes to `vouch`).
        With `vouch`, a DICOMweb or C-GET transfer does not wait for (or race) the instance-level
        C-FIND: once it is over, `vouch` may stand for the list (see `retrieve_and_decode`), else
        the list is asked for. C-MOVE needs the list first (our SCP takes only what it expects).
        """
        name, node = self.node()
        chosen = method or choose_method(node)
        if progress is not None:
            progress(0, 0, f"retrieving by {chosen}")
        # a series we stored: every instance it holds is known, so no C-FIND lists them first; each
        # must still arrive (RETRIEVE_INCOMPLETE names any the node lost)
        expected = expected or self.stored_series(target, name)

        per_instance = counted(progress, "retrieved")

        with ThreadPoolExecutor(2, thread_name_prefix="dicom-expected") as pool:
            size: Future[int | None] | None = None
            if early is not None and expected is None:  # a known list gives the count at once
                size = pool.submit(early, node, name)
            pending: Expected | Future[Expected] | Callable[[], Expected]
            if expected is not None:
                pending = expected
            elif vouch is not None and size is not None and chosen in ("dicomweb", "c-get"):
                answer = size

                def vouched_or_listed() -> Expected:
                    vouched = vouch(arrivals.items, answer.result())
                    if vouched is not None:
                        return vouched
                    log.info("asking %s for the instance list (what arrived does not match its count)", name)
                    # SOP classes only when C-GET still has to negotiate them (nothing arrived yet):
                    # asking makes Orthanc read every file, and fail on one it lost
                    classes = chosen == "c-get" and not arrivals.items
                    return expected_instances(node, self.calling_aet, target, name, classes)

                pending = vouched_or_listed
            else:
                # DICOMweb streams while the C-FIND lists what must arrive; DIMSE methods wait for the list
                pending = pool.submit(
                    expected_instances, node, self.calling_aet, target, name, chosen == "c-get"
                )
            if on_expected is not None and not callable(pending):
                if isinstance(pending, Future):
                    pending.add_done_callback(lambda f: None if f.exception() else on_expected(f.result()))
                else:
                    on_expected(pending)
            arrivals = Arrivals(pending, directory, per_instance, on_item)
            items = retrieve(
                node,
                self.calling_aet,
                target,
                arrivals,
                method=chosen,
                scp=self.scp,
                node_name=name,
                transferred=transferred,
            )
        if progress is not None:
            progress(len(items), len(items), f"all {len(items)} expected instances arrived")
        return chosen, arrivals.expected, items

    def retrieve_to_storage(
        self,
        target: Target,
        method: RetrieveMethod | None = None,
        progress: Progress | None = None,
        expected: Expected | None = None,
    ) -> RetrieveResult:
        """Retrieve into `<storage>/<study>/<series>/`; a failed retrieve leaves no files behind."""
        started = time.perf_counter()
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=private_dir(self.storage_dir())))
        try:
            chosen, expected, files = self._fetch(target, staging, method, progress, expected)
            study_dir = self.storage_dir() / target.study_uid
            for sop_uid, path in files.items():
                series_dir = study_dir / expected.instances[sop_uid][0]
                private_dir(series_dir)
                Path(path).replace(series_dir / f"{sop_uid}.dcm")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return RetrieveResult(
            method=chosen,
            level="series" if target.series_uid else "study",
            study_instance_uid=target.study_uid,
            series_instance_uids=expected.series,
            directory=str(study_dir if not target.series_uid else study_dir / target.series_uid),
            instances=len(files),
            bytes=sum((study_dir / expected.instances[s][0] / f"{s}.dcm").stat().st_size for s in files),
            seconds=round(time.perf_counter() - started, 3),
        )

    def retrieve_and_decode(
        self,
        target: Target,
        method: RetrieveMethod | None = None,
        progress: Progress | None = None,
        expected: Expected | None = None,
        allocate: Allocate | None = None,
    ) -> tuple[RetrieveMethod, list[DecodedSeries], list[SkippedSeries], float, float]:
        """Retrieve into memory and build one volume per image series (no temporary files).

        Each instance is read as it arrives (overlapping the transfer); after the retrieve is
        verified, each series is assembled into memory from `allocate` (the scene's, when it
        can take the voxels over without a copy). Returns (method, volumes, skipped series,
        seconds until every instance arrived, seconds after).
        """
        t0 = time.perf_counter()
        collector = SeriesCollector(allocate)
        ahead = on_expected = early = vouched = None
        if target.series_uid and not target.sop_uid:
            series_uid = target.series_uid

            def count_hint(node: DicomNode, name: str) -> int | None:
                count = self._series_size(node, name, target)
                if count is not None:
                    collector.expect(series_uid, count)
                return count

            def vouch(items: Mapping[str, Path | bytes], count: int | None) -> Expected | None:
                """The arrivals as the expected list when the node's count vouches for them: as many
                as it holds in the series, each read, of this series, under its own UID."""
                if count is None or len(items) != count or not collector.all_of_series(items, series_uid):
                    return None
                return Expected({sop: (series_uid, "") for sop in items})

            def expected_count(found: Expected) -> None:
                collector.expect(series_uid, sum(1 for s, _ in found.instances.values() if s == series_uid))

            # the series' size (one fast series-level C-FIND) lets slices go straight into the volume
            # as they arrive; assemble while the expected-instance query may still run
            early, on_expected, vouched = count_hint, expected_count, vouch
            ahead = functools.partial(collector.build_ahead, series_uid)
        try:
            chosen, expected, items = self._fetch(
                target, None, method, progress, expected, collector.add, ahead, on_expected, early, vouched
            )
            t1 = time.perf_counter()
            by_series: dict[str, list[str]] = {}
            for sop_uid in items:
                by_series.setdefault(expected.instances[sop_uid][0], []).append(sop_uid)
            items.clear()
            decoded, skipped = [], []
            for index, series_uid in enumerate(sorted(by_series), 1):
                if progress is not None:  # counts only: progress text also goes to the client's log
                    n = len(expected.instances)
                    progress(n, n, f"decoding series {index} of {len(by_series)}")
                try:
                    decoded.append(DecodedSeries(series_uid, collector.build(by_series.pop(series_uid))))
                except NotAVolume as exc:
                    skipped.append(SkippedSeries(series_instance_uid=series_uid, reason=exc.message))
        finally:
            collector.close()
        return chosen, decoded, skipped, t1 - t0, time.perf_counter() - t1

    def _series_size(self, node: DicomNode, name: str, target: Target) -> int | None:
        """NumberOfSeriesRelatedInstances from a series-level C-FIND (one answer, so it comes long
        before the instance list); None when the node does not say. Only a hint: the instance
        list remains the contract."""
        try:
            found = find(
                node,
                self.calling_aet,
                "series",
                ["SeriesInstanceUID", "NumberOfSeriesRelatedInstances"],
                {"StudyInstanceUID": target.study_uid, "SeriesInstanceUID": target.series_uid or ""},
                limit=1,
                node_name=name,
            )
            count = int(found.records[0]["NumberOfSeriesRelatedInstances"]) if found.records else 0
        except (SlicerMCPError, KeyError, TypeError, ValueError):
            return None
        return count if 0 < count <= MAX_INSTANCES else None

    def fetch_instances(self, target: Target, progress: Progress | None = None) -> dict[str, Path | bytes]:
        """Every instance of the target, in memory (SOP Instance UID -> encoded bytes), checked complete."""
        return self._fetch(target, None, None, progress)[2]

    def pdf_text(self, target: Target) -> PdfText:
        """Fetch one Encapsulated PDF instance into memory and extract its text."""
        return pdf_text(next(iter(self.fetch_instances(target).values())))

    # -- move and send -----------------------------------------------------------------------------

    def move(self, target: Target, destination_node: str, progress: Progress | None = None) -> MoveResult:
        """C-MOVE from the current node to another configured node."""
        _, destination = self.node(destination_node)
        return self.move_to_ae(target, destination.ae_title, progress)

    def move_to_ae(
        self, target: Target, destination_aet: str, progress: Progress | None = None
    ) -> MoveResult:
        """C-MOVE from the current node to an AE title the PACS knows as a destination."""
        name, node = self.node()

        on_pending = counted(progress, "moved")
        return move(node, self.calling_aet, destination_aet, target, node_name=name, on_pending=on_pending)

    def send_files_or_datasets(
        self, items: Sequence[Path | pydicom.Dataset], destination_node: str | None, progress: Progress | None
    ) -> SendResult:
        name, node = self.node(destination_node)
        return send(node, self.calling_aet, list(items), node_name=name, progress=counted(progress, "sent"))

    def send_volume(
        self,
        volume: VolumeArray,
        destination_node: str | None,
        reference: Target | None,
        series_description: str | None,
        progress: Progress | None,
    ) -> SendResult:
        """Write the volume as a new series (joining the reference's study when given) and C-STORE it."""
        ref_ds = self._reference_header(reference) if reference is not None else None
        datasets = volume_to_datasets(volume, reference=ref_ds, series_description=series_description)
        result = self.send_files_or_datasets(datasets, destination_node, progress)
        result.series_instance_uid = str(datasets[0].SeriesInstanceUID)
        result.study_instance_uid = str(datasets[0].StudyInstanceUID)
        return result

    def _reference_header(self, reference: Target) -> pydicom.Dataset:
        """Patient and study attributes of one instance of the reference series (from the current node)."""
        name, node = self.node()
        found = find(
            node,
            self.calling_aet,
            "instance",
            ["SOPInstanceUID"],
            {"StudyInstanceUID": reference.study_uid, "SeriesInstanceUID": reference.series_uid or ""},
            limit=1,
            node_name=name,
        )
        if not found.records:
            raise InvalidParameter(
                f"the reference series {reference.series_uid} has no instances on {name}",
                details={"series_instance_uid": reference.series_uid},
            )
        one = Target(reference.study_uid, reference.series_uid, str(found.records[0]["SOPInstanceUID"]))
        _, _, items = self._fetch(one, None, None, None)
        return pydicom.dcmread(io.BytesIO(items[one.sop_uid]), stop_before_pixels=True)  # type: ignore[index,arg-type]

    def close(self) -> None:
        self.scp.close()
        if self._own_storage is not None:
            shutil.rmtree(self._own_storage, ignore_errors=True)
            self._own_storage = None
