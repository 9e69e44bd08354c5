"""Scene datasets on the Hub: push a dataset folder as it is, plus a Parquet index and a dataset card; pull it back.

A pushed dataset repository holds:

- every scene file at its path relative to the dataset root (GeoTIFF, PNG, JPEG: never re-encoded), with its
  sidecars (`.aux.xml`, world files, `.prj`) and the root files a layout reads (`dataset_info.json`, an index), so
  a downloaded copy is scanned by the same layout as the original folder;
- `metadata/<split>.parquet`: one row per scene (split, name, image, label, height, width, bands, dtype, crs,
  transform, files), written with pyarrow;
- `README.md`: a dataset card whose YAML `configs:` point `datasets.load_dataset(repo_id)` at the index.

Uploads are resumable: the files go up in commits of `chunk_size` files, and files the remote already holds with
the same content (same size and git or LFS hash) are skipped, so an interrupted push is simply run again. The
index and the card go in the last commit: an index never names files that are not there yet. (huggingface_hub's
`upload_large_folder` would resume too, but it uploads a folder as it is, while a push here picks the scene files
out of the dataset folder by layout and adds generated files; this version of huggingface_hub does not have it.)
"""

from __future__ import annotations

import fnmatch
import glob
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from huggingface_hub import (
    CommitInfo,
    CommitOperationAdd,
    DatasetCard,
    DatasetCardData,
    HfApi,
    snapshot_download,
)
from huggingface_hub.utils.sha import git_hash, sha_fileobj

from .card import CARD_TAGS, class_rows, dataset_facts, dataset_names, template_path
from .errors import HubError, explain, require_online, require_token
from .models import commit, ensure_repo

INDEX_DIR = "metadata"
CARD_NAME = "README.md"
# Files next to a raster that carry its georeferencing or overviews: <file><suffix> ...
SIDECAR_SUFFIXES = (".aux.xml", ".ovr", ".msk")
# ... and <stem><suffix> (world files and projection files).
WORLD_FILE_SUFFIXES = (".tfw", ".tifw", ".tiffw", ".pgw", ".pngw", ".jgw", ".jpgw", ".jpegw", ".wld", ".prj")
DEFAULT_CHUNK_SIZE = 100
INDEX_COLUMNS = (
    "split",
    "name",
    "image",
    "label",
    "height",
    "width",
    "bands",
    "dtype",
    "crs",
    "transform",
    "files",
)


@dataclass(frozen=True)
class Scene:
    """One row of the index: a scene's files (paths relative to the dataset root, '/'-separated) and header."""

    split: str
    name: str
    image: str
    label: str | None
    height: int
    width: int
    bands: int
    dtype: str
    crs: str | None
    transform: tuple[float, ...] | None
    files: tuple[str, ...]

    def row(self) -> dict[str, Any]:
        return {column: getattr(self, column) for column in INDEX_COLUMNS}


def _relative(root: Path, path: str | Path) -> str:
    # abspath, not resolve: files may be symlinks into another folder (they are uploaded as their content).
    try:
        return PurePosixPath(Path(os.path.abspath(path)).relative_to(os.path.abspath(root))).as_posix()
    except ValueError:
        raise HubError(
            f"scene file {path} is outside the dataset folder {root}; a dataset push uploads files under its "
            "root only (move the file in, or make the index paths relative)"
        ) from None


def _with_sidecars(root: Path, path: Path) -> list[str]:
    candidates = [path]
    candidates += [path.with_name(path.name + suffix) for suffix in SIDECAR_SUFFIXES]
    candidates += [path.with_suffix(suffix) for suffix in WORLD_FILE_SUFFIXES]
    return [_relative(root, p) for p in candidates if p.is_file()]


def _crs_text(crs: Any) -> str | None:
    if not crs:
        return None
    return crs.to_string() or crs.to_wkt()


def _read_header(path: str) -> dict[str, Any]:
    from ..data.reading import open_raster

    try:
        with open_raster(path) as source:
            georeferenced = source.crs is not None
            return dict(
                height=source.height,
                width=source.width,
                bands=source.count,
                dtype=str(source.dtype),
                crs=_crs_text(source.crs),
                transform=tuple(float(v) for v in tuple(source.transform)[:6]) if georeferenced else None,
            )
    except (OSError, ValueError) as error:
        raise HubError(f"cannot read {path}: {str(error).splitlines()[0]}") from None


def scan_scenes(root: str | os.PathLike, layout: str) -> tuple[list[Scene], Any, str]:
    """The scenes of every split of `root` under `layout`, with the dataset's `DatasetInfo` and the arrangement.

    Raises `HubError` when `root` does not match the layout, or a label's size differs from its image's.
    """
    from ..data import get_layout
    from ..data.layouts import FolderLayout

    root = Path(root)
    try:
        chosen = get_layout(layout)
        pattern, records = chosen.match(root)
        info = chosen.info(root) if isinstance(chosen, FolderLayout) else pattern.info
    except ValueError as error:
        raise HubError(str(error)) from None
    index = chosen.index_file(root) if isinstance(chosen, FolderLayout) else None
    arrangement = f"index {index.name}" if index is not None else pattern.name
    scenes = []
    for record in records:
        header = _read_header(record.image)
        files = _with_sidecars(root, Path(record.image))
        label = None
        if record.label is not None:
            label = _relative(root, record.label)
            files += _with_sidecars(root, Path(record.label))
            label_header = _read_header(record.label)
            if (label_header["height"], label_header["width"]) != (header["height"], header["width"]):
                raise HubError(
                    f"label {record.label} is {label_header['height']}x{label_header['width']} px but its image "
                    f"{record.image} is {header['height']}x{header['width']} px; labels must cover their scene"
                )
        scenes.append(
            Scene(
                split=record.split,
                name=record.name,
                image=_relative(root, record.image),
                label=label,
                files=tuple(dict.fromkeys(files)),
                **header,
            )
        )
    return scenes, info, arrangement


def _root_files(root: Path) -> list[str]:
    """Files at the dataset root that a layout reads (class descriptions, CSV/Parquet indexes)."""
    from ..data.layouts import INDEX_NAMES, INFO_NAMES

    return [name for name in (*INFO_NAMES, *INDEX_NAMES) if (root / name).is_file()]


def index_tables(scenes: Sequence[Scene]) -> dict[str, bytes]:
    """`metadata/<split>.parquet` -> Parquet bytes, one table per split (rows in scene order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("split", pa.string()),
            ("name", pa.string()),
            ("image", pa.string()),
            ("label", pa.string()),
            ("height", pa.int64()),
            ("width", pa.int64()),
            ("bands", pa.int64()),
            ("dtype", pa.string()),
            ("crs", pa.string()),
            ("transform", pa.list_(pa.float64())),
            ("files", pa.list_(pa.string())),
        ]
    )
    tables = {}
    for split in dict.fromkeys(scene.split for scene in scenes):
        rows = [scene.row() for scene in scenes if scene.split == split]
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), buffer)
        tables[f"{INDEX_DIR}/{split}.parquet"] = buffer.getvalue()
    return tables


def _size_category(count: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if count < limit:
            return name
    return "100K<n<1M"


def _range(values: Iterable[tuple[int, int]]) -> str:
    values = sorted(values)
    low, high = values[0], values[-1]
    text = f"{low[0]} x {low[1]}"
    return text if low == high else f"{text} to {high[0]} x {high[1]}"


def render_dataset_card(
    repo_id: str, layout: str, info: Any, scenes: Sequence[Scene], arrangement: str = ""
) -> DatasetCard:
    """The dataset card: YAML (license, task, tags, `configs` for the index) and splits, classes, usage, citation."""
    facts = dataset_facts(layout) if layout in dataset_names() else {}
    splits = list(dict.fromkeys(scene.split for scene in scenes))
    card_data = DatasetCardData(
        license=facts.get("license", "other"),
        pretty_name=facts.get("pretty_name") or info.title or repo_id.split("/")[-1],
        task_categories=["image-segmentation"],
        task_ids=["semantic-segmentation"],
        size_categories=_size_category(len(scenes)),
        tags=[tag for tag in CARD_TAGS if tag != "upernet"] + ["geospatial", layout],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"{INDEX_DIR}/{split}.parquet"} for split in splits],
            }
        ],
    )
    split_rows = []
    for split in splits:
        members = [scene for scene in scenes if scene.split == split]
        split_rows.append(
            dict(
                name=split,
                scenes=len(members),
                labelled=sum(scene.label is not None for scene in members),
                bands=", ".join(str(b) for b in sorted({scene.bands for scene in members})),
                dtypes=", ".join(sorted({scene.dtype for scene in members})),
                sizes=_range((scene.height, scene.width) for scene in members) + " px",
                georeferenced=sum(scene.crs is not None for scene in members),
            )
        )
    classes = class_rows(info.id2label, info.palette)
    description = facts.get("description") or (
        f"A scene dataset for whole-scene semantic segmentation with rest_hf ({len(scenes)} scenes)."
    )
    return DatasetCard.from_template(
        card_data,
        template_path=str(template_path("dataset_card.md")),
        repo_id=repo_id,
        description=description,
        layout=layout,
        arrangement=arrangement,
        splits=split_rows,
        first_split=next((s for s in splits if s != "all"), None),
        num_labels=len(classes),
        ignore_index=info.ignore_index,
        label_values=info.label_mapping.describe(),
        classes=classes,
        homepage=facts.get("homepage") or info.url,
        license_note=facts.get("license_note"),
        citation=facts.get("citation"),
    )


def _remote_files(api: HfApi, repo_id: str, revision: str | None, token: str) -> dict[str, Any]:
    """Path -> `RepoFile` of what the remote repository (revision) already holds; empty for a new repository."""
    try:
        entries = api.list_repo_tree(
            repo_id, repo_type="dataset", revision=revision, recursive=True, token=token
        )
        return {entry.path: entry for entry in entries if hasattr(entry, "blob_id")}
    except Exception as error:  # noqa: BLE001 - every Hub failure becomes one line
        raise explain(
            error, action=f"list {repo_id}", repo_id=repo_id, repo_type="dataset", revision=revision
        ) from error


def _same_content(path: Path, remote: Any) -> bool:
    """Whether the remote file holds the bytes of `path` (LFS sha256, or the git blob hash of small files)."""
    if remote.size != path.stat().st_size:
        return False
    if remote.lfs is not None:
        with path.open("rb") as handle:
            return sha_fileobj(handle).hex() == remote.lfs.sha256
    return git_hash(path.read_bytes()) == remote.blob_id


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def push_dataset(
    root: str | os.PathLike,
    repo_id: str,
    *,
    layout: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    api: HfApi | None = None,
    progress: bool = True,
) -> list[CommitInfo]:
    """Upload a scene dataset folder to a Hub dataset repository, resumably.

    Args:
        root: The dataset folder, arranged as `layout` expects.
        repo_id: `org/name` of the dataset repository (created when missing).
        layout: `glh-water`, `fbp`, `whu-ohs`, `uavid` or `folder` (see `rest_hf.data.layouts`).
        private: Create the repository as private.
        revision: Branch to push to (created when missing).
        token: A write token; defaults to HF_TOKEN or the token saved by `hf auth login`.
        chunk_size: Files per commit.
        api: An `HfApi` to use (tests pass a fake that writes to a local folder).
        progress: Show a progress bar.

    Returns:
        The commits made: one per chunk of new files, then one with the index and the card.
    """
    from tqdm.auto import tqdm

    action = f"push dataset {root} to {repo_id}"
    require_online(action)
    if chunk_size < 1:
        raise HubError(f"--chunk-size must be at least 1, got {chunk_size}")
    root = Path(root)
    scenes, info, arrangement = scan_scenes(root, layout)
    token = require_token(token, action)
    api = api or HfApi()
    generated: dict[str, bytes] = dict(index_tables(scenes))
    generated[CARD_NAME] = str(render_dataset_card(repo_id, layout, info, scenes, arrangement)).encode(
        "utf-8"
    )

    files = list(dict.fromkeys([*_root_files(root), *(path for scene in scenes for path in scene.files)]))
    target = dict(repo_type="dataset", revision=revision, token=token, action=action)
    ensure_repo(api, repo_id, private=private, **target)
    remote = _remote_files(api, repo_id, revision, token)
    pending = [path for path in files if path not in remote or not _same_content(root / path, remote[path])]

    commits = []
    chunks = _chunks(pending, chunk_size)
    with tqdm(
        total=sum((root / path).stat().st_size for path in pending),
        unit="B",
        unit_scale=True,
        desc=f"{repo_id}: {len(pending)} of {len(files)} files to upload",
        disable=not progress,
    ) as bar:
        for number, chunk in enumerate(chunks, start=1):
            operations = [
                CommitOperationAdd(path_in_repo=path, path_or_fileobj=root / path) for path in chunk
            ]
            commits.append(
                commit(
                    api,
                    repo_id,
                    operations,
                    commit_message=f"Upload scene files ({number}/{len(chunks)})",
                    **target,
                )
            )
            bar.update(sum((root / path).stat().st_size for path in chunk))
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in generated.items()
    ]
    commits.append(
        commit(
            api,
            repo_id,
            operations,
            commit_message="Upload scene index and dataset card",
            **target,
        )
    )
    return commits


def _split_files(folder: Path, split: str) -> list[str]:
    """Every file of the scenes of `split`, read from the downloaded index."""
    import pyarrow.parquet as pq

    index = folder / INDEX_DIR / f"{split}.parquet"
    if not index.is_file():
        present = sorted(p.stem for p in (folder / INDEX_DIR).glob("*.parquet"))
        raise HubError(f"the dataset has no split {split!r}; its splits are {', '.join(present) or 'none'}")
    files = pq.read_table(index, columns=["files"]).column("files").to_pylist()
    return list(dict.fromkeys(path for scene_files in files for path in scene_files))


def pull_dataset(
    repo_id: str,
    *,
    split: str | None = None,
    allow_patterns: Sequence[str] | None = None,
    local_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | None = None,
) -> Path:
    """Download a scene dataset (all of it, one split, and/or the files matching `allow_patterns`); return its folder.

    The card, the index and the root files a layout reads always come along, so the folder scans with the same
    layout as the original. Downloads go through the Hub cache (or into `local_dir`); offline, the cache answers.
    """
    from ..data.layouts import INDEX_NAMES, INFO_NAMES

    action = f"pull dataset {repo_id}"
    common = dict(
        repo_type="dataset", revision=revision, cache_dir=cache_dir, local_dir=local_dir, token=token
    )
    always = [CARD_NAME, f"{INDEX_DIR}/*", *INFO_NAMES, *INDEX_NAMES]
    try:
        if split is None:
            patterns = [*always, *allow_patterns] if allow_patterns else None
            return Path(snapshot_download(repo_id, allow_patterns=patterns, **common))
        folder = Path(snapshot_download(repo_id, allow_patterns=always, **common))
        files = _split_files(folder, split)
        if allow_patterns:
            files = [path for path in files if any(fnmatch.fnmatch(path, p) for p in allow_patterns)]
        # Paths become patterns: escape the characters fnmatch would read as wildcards.
        return Path(snapshot_download(repo_id, allow_patterns=[*always, *map(glob.escape, files)], **common))
    except HubError:
        raise
    except Exception as error:  # noqa: BLE001 - every Hub failure becomes one line
        raise explain(
            error, action=action, repo_id=repo_id, repo_type="dataset", revision=revision
        ) from error


__all__ = [
    "INDEX_COLUMNS",
    "Scene",
    "index_tables",
    "pull_dataset",
    "push_dataset",
    "render_dataset_card",
    "scan_scenes",
]
