"""A tree of raw MSTAR Phoenix files (``*.000``, ``*.015``, ... or any file with a Phoenix header).

The class comes from the header's ``TargetType`` (``bmp2_tank`` -> BMP2, ``zsu23-4_gun`` ->
ZSU234; other targets: the upper-cased word before the first underscore), or from the parent
folder name with ``class_from="folder"`` or when the header has none. The depression angle comes
from ``DesiredDepression`` (else ``MeasuredDepression``, else a ``<NN>_DEG`` folder name):
17 deg files are the train pool and 15 deg files the test set (options ``train_depression``,
``test_depression``); files at other depressions are left out and counted in
``listing.extra["skipped"]``. Magnitudes are float data: see ``sarfewshot.data.transforms``
for how they are scaled.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from sarfewshot.data.base import Listing, SARDataset
from sarfewshot.data.io import find_images, is_raw_mstar_file, read_phoenix_header
from sarfewshot.data.listing import make_listing, require_root
from sarfewshot.data.registry import DATASET_REGISTRY
from sarfewshot.datasets.mstar_soc import MSTAR_CLASSES, mstar_class_key
from sarfewshot.errors import DatasetError, ImageReadError

_DEG_FOLDER = re.compile(r"^(\d+)_?DEG$", re.IGNORECASE)


def target_class(target_type: str) -> str:
    """Class name of a header ``TargetType`` (MSTAR names canonical, others upper-cased)."""
    key = mstar_class_key(target_type)
    for cname in sorted(MSTAR_CLASSES, key=len, reverse=True):
        if key.startswith(cname):
            return cname
    return target_type.split("_")[0].upper()


def _depression(header: dict, path: Path) -> int | None:
    for key in ("DesiredDepression", "MeasuredDepression"):
        try:
            return int(round(float(header[key])))
        except (KeyError, ValueError):
            continue
    for part in reversed(path.parent.parts):
        m = _DEG_FOLDER.match(part)
        if m:
            return int(m.group(1))
    return None


@DATASET_REGISTRY.register("mstar_raw", aliases=("mstar_phoenix",))
class MSTARRaw(SARDataset):
    """Raw MSTAR files; class from the header, 17 deg train / 15 deg test."""

    name = "mstar_raw"
    layout = "any tree of raw MSTAR Phoenix files (e.g. 17_DEG/<class>/HB03787.000)"

    def _file_info(self, path: Path) -> tuple[str, int | None]:
        try:
            header = read_phoenix_header(path)
        except ImageReadError:
            header = {}  # unreadable files still get listed; decoding them reports the error
        by_folder = self.options.get("class_from", "header") == "folder"
        target = header.get("TargetType", "")
        source = path.parent.name if by_folder or not target else target
        return target_class(source), _depression(header, path)

    def list(self) -> Listing:
        """Files at the train and test depressions, labelled by target type."""
        root = require_root(self.root, self.layout)
        files = [p for p in find_images(root) if is_raw_mstar_file(p)]
        if not files:
            raise DatasetError(f"no raw MSTAR files under {root}; expected {self.layout}")
        train_dep = int(self.options.get("train_depression", 17))
        test_dep = int(self.options.get("test_depression", 15))
        train, test, skipped = [], [], {}
        for path in files:
            cname, dep = self._file_info(path)
            item = (path.relative_to(root).as_posix(), cname)
            if dep == train_dep:
                train.append(item)
            elif dep == test_dep:
                test.append(item)
            else:
                skipped[str(dep)] = skipped.get(str(dep), 0) + 1
        if skipped:
            warnings.warn(
                f"mstar_raw: left out files at depressions {skipped} under {root} "
                f"(train {train_dep} deg, test {test_dep} deg)",
                UserWarning,
                stacklevel=2,
            )
        return make_listing(root, train, test, preferred=MSTAR_CLASSES, extra={"skipped": skipped})
