"""Slicer's sample data sets: a name -> (file, sha256) registry and a checksum-verified cache.

Slicer's testing data are content-addressed (`<base_url>/SHA256/<sha256>`), so any mirror
that serves the same paths, or a local folder of files named by their sha256, can stand in
for the internet. A file is only ever moved into the cache after its checksum matched.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import requests

from ..core.config import SampleDataSettings
from ..core.errors import ErrorCode, InvalidParameter, SlicerMCPError
from ..core.localhost import private_dir, user_data_dir
from ..core.models import SampleDataInfo, SampleDataList
from ..core.progress import CountProgress

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SampleSpec:
    name: str
    description: str
    file_name: str
    sha256: str


SAMPLES: dict[str, SampleSpec] = {
    s.name: s
    for s in (
        SampleSpec(
            "MRHead",
            "MR brain, T1 (256x256x130)",
            "MR-head.nrrd",
            "cc211f0dfd9a05ca3841ce1141b292898b2dd2d3f08286affadf823a7e58df93",
        ),
        SampleSpec(
            "CTChest",
            "CT chest",
            "CT-chest.nrrd",
            "4507b664690840abb6cb9af2d919377ffc4ef75b167cb6fd0f747befdb12e38e",
        ),
        SampleSpec(
            "CTACardio",
            "CT angiography, heart",
            "CTA-cardio.nrrd",
            "3b0d4eb1a7d8ebb0c5a89cc0504640f76a030b4e869e33ff34c564c3d3b88ad2",
        ),
        SampleSpec(
            "DTIBrain",
            "Diffusion tensor image, brain",
            "DTI-Brain.nrrd",
            "5c78d00c86ae8d968caa7a49b870ef8e1c04525b1abc53845751d8bce1f0b91a",
        ),
        SampleSpec(
            "MRBrainTumor1",
            "MR brain with tumour, time point 1",
            "RegLib_C01_1.nrrd",
            "998cb522173839c78657f4bc0ea907cea09fd04e44601f17c82ea27927937b95",
        ),
        SampleSpec(
            "MRBrainTumor2",
            "MR brain with tumour, time point 2",
            "RegLib_C01_2.nrrd",
            "1a64f3f422eb3d1c9b093d1a18da354b13bcf307907c66317e2463ee530b7a97",
        ),
    )
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class SampleDataCache:
    """Finds, downloads and verifies sample files; thread-safe enough for one file per name."""

    def __init__(self, settings: SampleDataSettings, registry: dict[str, SampleSpec] | None = None):
        self.settings = settings
        self.registry = SAMPLES if registry is None else registry
        self.cache_dir = Path(settings.cache_dir) if settings.cache_dir else user_data_dir() / "sample-data"

    def spec(self, name: str) -> SampleSpec:
        try:
            return self.registry[name]
        except KeyError:
            raise InvalidParameter(
                f"unknown sample {name!r}; choose one of: {', '.join(self.registry)} (see list_sample_data)",
                details={"available": list(self.registry)},
            ) from None

    def cached_path(self, spec: SampleSpec) -> Path:
        return self.cache_dir / spec.sha256[:16] / spec.file_name

    def source(self) -> str:
        return self.settings.mirror_dir or self.settings.base_url

    def list_samples(self) -> SampleDataList:
        return SampleDataList(
            samples=[
                SampleDataInfo(
                    name=s.name,
                    description=s.description,
                    file_name=s.file_name,
                    sha256=s.sha256,
                    size_bytes=self.cached_path(s).stat().st_size if self.cached_path(s).exists() else None,
                    cached=self.cached_path(s).exists(),
                )
                for s in self.registry.values()
            ],
            source=self.source(),
        )

    def ensure(self, name: str, progress: CountProgress | None = None) -> Path:
        """The local path of sample `name`, downloading and verifying it first if needed."""
        spec = self.spec(name)
        target = self.cached_path(spec)
        if target.exists():
            return target
        try:
            private_dir(target.parent)
            fd, tmp_name = tempfile.mkstemp(prefix=".part-", dir=target.parent)
        except OSError as exc:
            raise SlicerMCPError(
                f"cannot write the sample cache folder {self.cache_dir}: {exc.strerror or exc}. "
                "Point sample_data.cache_dir in the config at a writable folder.",
                code=ErrorCode.DOWNLOAD_FAILED,
                details={"cache_dir": str(self.cache_dir)},
            ) from exc
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                self._fetch(spec, out, progress)
            actual = sha256_of(tmp)
            if actual != spec.sha256:
                raise SlicerMCPError(
                    f"the download of {spec.name} is corrupt (sha256 {actual[:12]}... instead of "
                    f"{spec.sha256[:12]}...); nothing was cached. Check the mirror, then try again.",
                    code=ErrorCode.DOWNLOAD_FAILED,
                    details={"expected_sha256": spec.sha256, "actual_sha256": actual},
                )
            os.replace(tmp, target)
            log.info("sample %s cached (%d bytes)", spec.name, target.stat().st_size)
            return target
        finally:
            tmp.unlink(missing_ok=True)

    def _fetch(self, spec: SampleSpec, out, progress: CountProgress | None) -> None:
        if self.settings.mirror_dir:
            mirror = Path(self.settings.mirror_dir)
            src = mirror / spec.sha256
            if not src.exists():
                src = mirror / spec.file_name
            if not src.exists():
                raise SlicerMCPError(
                    f"sample {spec.name} is not in the mirror folder {self.settings.mirror_dir} "
                    f"(looked for {spec.sha256} and {spec.file_name})",
                    code=ErrorCode.DOWNLOAD_FAILED,
                )
            _copy_local(spec, src, out)
            return
        url = f"{self.settings.base_url.rstrip('/')}/SHA256/{spec.sha256}"
        parsed = urlparse(url)
        if parsed.scheme == "file":
            _copy_local(spec, Path(unquote(parsed.path)), out)
            return
        try:
            with requests.get(url, stream=True, timeout=self.settings.timeout_s) as resp:
                resp.raise_for_status()
                total = int(resp.headers["Content-Length"]) if "Content-Length" in resp.headers else None
                done = 0
                for chunk in resp.iter_content(_CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total or 0)
        except requests.RequestException as exc:
            raise SlicerMCPError(
                f"could not download sample {spec.name} from {parsed.scheme}://{parsed.netloc} "
                f"({type(exc).__name__}). If this machine is offline, put the file in a folder and set "
                "sample_data.mirror_dir in the config, or point sample_data.base_url at a reachable mirror.",
                code=ErrorCode.DOWNLOAD_FAILED,
                details={"url": url},
            ) from exc


def _copy_local(spec: SampleSpec, src: Path, out) -> None:
    """Copy a sample from a local folder (mirror_dir or a file:// store); unreadable is DOWNLOAD_FAILED."""
    try:
        with open(src, "rb") as f:
            shutil.copyfileobj(f, out, _CHUNK)
    except OSError as exc:
        raise SlicerMCPError(
            f"could not read sample {spec.name} from {src}: {exc.strerror or exc}. Check the path in "
            "sample_data.mirror_dir or sample_data.base_url, or that the file is readable.",
            code=ErrorCode.DOWNLOAD_FAILED,
            details={"path": str(src)},
        ) from exc
