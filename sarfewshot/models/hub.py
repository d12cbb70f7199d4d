"""Where public weights live, and ``hf://OWNER/REPO/PATH[@REVISION]`` downloads.

Each registered backbone lists its known public sources (:class:`WeightSource`): a Hugging Face
repository and file, a Kaggle model, a BaiduYun link. Hugging Face files are fetched with
``huggingface_hub`` (optional extra ``hub``) into its standard cache (``HF_HUB_CACHE``), so a file
fetched once loads offline with ``HF_HUB_OFFLINE=1``. A source may pin the sha256 of its file; a
downloaded file that differs is refused with both hashes named.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sarfewshot.errors import ConfigError, WeightsError

HF_SCHEME = "hf://"


@dataclasses.dataclass(frozen=True)
class WeightSource:
    """One public place a backbone's weights can be downloaded from.

    ``kind`` is ``hf`` (``where`` = ``OWNER/REPO``, ``file`` = path in the repo), ``kaggle``
    (``where`` = the model handle) or ``baidu`` / ``url`` (``where`` = a link for a browser).
    """

    kind: str
    where: str
    file: str | None = None
    sha256: str | None = None
    note: str = ""

    def uri(self) -> str:
        """How to name it on the command line (``hf://...``) or where to go for it."""
        if self.kind == "hf" and self.file:
            return f"{HF_SCHEME}{self.where}/{self.file}"
        if self.kind == "hf":
            return f"https://huggingface.co/{self.where}"
        if self.kind == "kaggle":
            return f"https://www.kaggle.com/models/{self.where}"
        return self.where

    def describe(self) -> str:
        """One line for listings."""
        note = f" ({self.note})" if self.note else ""
        return f"{self.kind}: {self.uri()}{note}"


@dataclasses.dataclass(frozen=True)
class HFLocation:
    """A parsed ``hf://OWNER/REPO/PATH[@REVISION]``."""

    repo_id: str
    filename: str
    revision: str | None = None


def is_hf_uri(text: object) -> bool:
    """Whether ``text`` names a Hugging Face file (``hf://...``)."""
    return isinstance(text, str) and text.strip().lower().startswith(HF_SCHEME)


def parse_hf_uri(uri: str) -> HFLocation:
    """Split ``hf://OWNER/REPO/PATH[@REVISION]`` (ConfigError naming the value if malformed)."""
    body = uri.strip()[len(HF_SCHEME) :]
    revision = None
    if "@" in body:
        body, _, revision = body.rpartition("@")
        revision = revision.strip() or None
    parts = [p for p in body.split("/") if p]
    if len(parts) < 3:
        raise ConfigError(
            f"--weights {uri}: expected hf://OWNER/REPO/PATH[@REVISION], e.g. "
            "hf://kiki-orb/phi-JEPA/weights/ijepa_vitb16_e100.pth.tar"
        )
    return HFLocation(f"{parts[0]}/{parts[1]}", "/".join(parts[2:]), revision)


def _hf_client():
    try:
        import huggingface_hub
    except ImportError:
        raise WeightsError(
            "hf:// weights need huggingface_hub: pip install 'sarfewshot[hub]'"
        ) from None
    return huggingface_hub


def hf_download(uri: str) -> Path:
    """The local path of ``uri`` in the Hugging Face cache, downloading it if needed.

    Honours ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE=1`` (then only the cache is read).

    Raises:
        WeightsError: huggingface_hub is missing, or the file cannot be fetched (offline and not
            cached, unknown repository or file, network failure), naming the URI.
    """
    loc = parse_hf_uri(uri)
    hub = _hf_client()
    try:
        path = hub.hf_hub_download(loc.repo_id, loc.filename, revision=loc.revision)
    except Exception as exc:  # noqa: BLE001 - hub raises many types (offline, 404, HTTP)
        offline = " (HF_HUB_OFFLINE is set: only the cache is read)" if _offline() else ""
        raise WeightsError(
            f"--weights {uri}: cannot get {loc.filename} from {loc.repo_id}{offline}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    return Path(path)


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def pinned_sha256(sources: tuple[WeightSource, ...], uri: str) -> str | None:
    """The sha256 a backbone's sources pin for the Hugging Face file ``uri``, if any."""
    loc = parse_hf_uri(uri)
    for src in sources:
        if src.kind == "hf" and src.where == loc.repo_id and src.file == loc.filename:
            return src.sha256
    return None


def check_sha256(path: Path, digest: str, pinned: str | None, uri: str) -> None:
    """Refuse a file whose sha256 differs from the pinned one (both hashes named)."""
    if pinned and digest.lower() != pinned.lower():
        raise WeightsError(
            f"{uri} ({path}): sha256 {digest} does not match the pinned sha256 {pinned}; the "
            "file changed upstream or is corrupt. Delete it from the Hugging Face cache or pin "
            "a revision with @REVISION"
        )


def first_hub_source(sources: tuple[WeightSource, ...]) -> WeightSource | None:
    """The first source this installation can download (a Hugging Face file with the client)."""
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        return None
    return next((s for s in sources if s.kind == "hf" and s.file), None)
