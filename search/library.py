"""Search one's own motion library with a trained trimo model: the library API under `trimo-search`.

    searcher = Searcher("runs/mine/export")
    index, skipped = searcher.build_index(["my_mocap/"])          # BVH, ASF/AMC, AMASS, .npy, shard sets
    index.save("my_mocap.index")           # my_mocap.index.safetensors, .features.npy and .json
    searcher.search_text(index, "a person jumps", k=5)             # [Hit(id, path, score, start_s, end_s)]
    searcher.moments(index, "a person jumps", k=5)                 # [Moment(id, start_s, end_s, score, ...)]

Every motion is embedded as chunks of `chunk_s` seconds with 50% overlap (the corpus protocol's
chunk length, so long takes are searched where the model was trained: on clips of seconds, not
minutes); a motion's score is its best chunk's cosine, and a hit names that chunk's span.
Moments come from the localization head when the model has one (candidates: the best motions by
chunk score, ranked by p_start * p_end * exp(lambda * score) as in the corpus protocol), else from
the temporal pyramid over the model's embeddings inside each candidate's best chunk. All model
calls go through `evaluation.inference.Encoder`, the task API that training and evaluation use.

An index stores the motions' features (moments need them; memory-mapped, so loading an index
reads only its embeddings), the chunk embeddings, each motion's source path, size and mtime (`add`
embeds only new or changed files) and the model's fingerprint (a hash of its weights) and
feature definition: a query with another model is refused.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from configs.schema import EvalOptions
from evaluation import protocols as M
from evaluation.inference import Encoder

MOTION_SUFFIXES = (".bvh", ".amc", ".npz", ".npy")   # in folders; a DeepMimic .txt is indexed when named
FPS = 20.0
INDEX_VERSION = 1
_DEFAULTS = EvalOptions()
# Chunks of the corpus protocol's length, at half its hop density: a query reads every chunk
# embedding (memory-bound), and 50% overlap still puts every action of up to 5 s inside a chunk.
CHUNK_OVERLAP = 0.5
# numpy: exact, one matrix-vector product per query; faiss: exact too (IndexFlatIP), for libraries
# of millions of chunks (optional extra)
SEARCH_BACKENDS = ("numpy", "faiss")
# Motions embedded per step of `add`: their features are in memory, the others on disk.
EMBED_GROUP = 256


class SearchIndexError(ValueError):
    """An index that cannot be used with this model (or at all); the message says what to do."""


class SkippedFile(Exception):
    """A library file that could not be indexed: `reason` is a short category."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Hit:
    id: str
    path: str
    score: float          # cosine of the query and the motion's best chunk
    start_s: float        # that chunk's span
    end_s: float


@dataclass
class Moment:
    id: str
    path: str
    start_s: float
    end_s: float
    score: float                          # head: p_start * p_end * exp(lambda * r); pyramid: cosine
    method: str                           # "head" or "pyramid"
    duration_s: float
    p_start: list[float] = field(default_factory=list)   # per snippet (head only), for plots
    p_end: list[float] = field(default_factory=list)


class FeatureStore:
    """Every motion's (frames, 263) float32 features, on disk: a saved index's features file plus a
    scratch file (deleted on close) that new motions are appended to. Building, growing or saving
    an index therefore holds in memory only the motions being embedded, whatever the library's
    size; `store[i]` is a memory-mapped view, `read_bytes(i)` a plain read (saving uses it, so
    that the pages it reads are not mapped into the process)."""

    SAVED, SCRATCH = 0, 1
    ROW_BYTES = 263 * 4

    def __init__(self, arrays: Iterable[np.ndarray] = ()):
        self._saved: np.memmap | None = None
        self._saved_file = None       # the saved features file, for reads
        self._scratch = None          # the scratch file, created on the first append
        self._scratch_rows = 0
        self._scratch_map: np.ndarray | None = None
        self._refs: list[tuple[int, int, int]] = []   # per motion: (SAVED | SCRATCH, first row, end row)
        self.extend(arrays)

    @classmethod
    def mapped(cls, path: Path, offsets: np.ndarray) -> FeatureStore:
        """The motions of a saved index: rows offsets[i]:offsets[i + 1] of its .features.npy."""
        out = cls()
        out._saved = np.load(path, mmap_mode="r", allow_pickle=False)
        out._saved_file = open(path, "rb")
        out._refs = [(cls.SAVED, a, b) for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
        return out

    def extend(self, arrays: Iterable[np.ndarray]) -> None:
        import tempfile

        for array in arrays:
            array = np.ascontiguousarray(array, dtype=np.float32).reshape(-1, 263)
            if self._scratch is None:
                self._scratch = tempfile.TemporaryFile(prefix="trimo-index-features-")
            self._scratch.seek(0, os.SEEK_END)
            self._scratch.write(array.tobytes())
            self._refs.append((self.SCRATCH, self._scratch_rows, self._scratch_rows + len(array)))
            self._scratch_rows += len(array)
            self._scratch_map = None

    def __getitem__(self, i: int) -> np.ndarray:
        source, a, b = self._refs[i]
        if source == self.SAVED:
            return self._saved[a:b]
        if self._scratch_map is None:     # remapped after appends: one mapping, not one per motion
            self._scratch.flush()
            self._scratch_map = np.memmap(self._scratch, dtype=np.float32, mode="r", shape=(self._scratch_rows, 263))
        return self._scratch_map[a:b]

    def read_bytes(self, i: int) -> bytes:
        source, a, b = self._refs[i]
        if source == self.SAVED:
            file, base = self._saved_file, self._saved.offset
        else:
            self._scratch.flush()
            file, base = self._scratch, 0
        return os.pread(file.fileno(), (b - a) * self.ROW_BYTES, base + a * self.ROW_BYTES)

    def __delitem__(self, i: int) -> None:
        del self._refs[i]

    def __len__(self) -> int:
        return len(self._refs)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    def frames(self) -> list[int]:
        return [b - a for _, a, b in self._refs]


@dataclass
class MotionIndex:
    """Motions (features at 20 fps) and their chunk embeddings, tied to one model."""

    model: str                             # the model folder the index was built with
    fingerprint: str                       # sha256 of the model's weights
    motion_features: str                   # 263-d definition of the stored features
    chunk_s: float = _DEFAULTS.chunk_s
    chunk_overlap: float = CHUNK_OVERLAP
    entries: list[dict] = field(default_factory=list)    # id, path, frames, duration_s, size, mtime
    features: FeatureStore = field(default_factory=FeatureStore)
    chunk_emb: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    chunk_owner: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    chunk_span: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    _first: np.ndarray | None = field(default=None, repr=False, compare=False)
    _faiss: object | None = field(default=None, repr=False, compare=False)

    def chunk_first(self) -> np.ndarray:
        """Each motion's first chunk, and the number of chunks at the end (kept until the chunks change)."""
        if self._first is None or len(self._first) != len(self) + 1:
            self._first = np.searchsorted(self.chunk_owner, np.arange(len(self) + 1))
        return self._first

    def faiss(self):
        """A FAISS exact inner-product index over the chunk embeddings (optional extra
        `pip install trimo[search]`), built on first use and kept until the chunks change."""
        if self._faiss is None or self._faiss.ntotal != len(self.chunk_emb):
            try:
                import faiss
            except ImportError:
                raise SearchIndexError("the faiss backend needs faiss-cpu: pip install faiss-cpu "
                                       "(or use the default numpy backend)") from None
            self._faiss = faiss.IndexFlatIP(self.chunk_emb.shape[1])
            self._faiss.add(np.ascontiguousarray(self.chunk_emb, np.float32))
        return self._faiss

    def __len__(self) -> int:
        return len(self.entries)

    def position(self, motion_id: str) -> int:
        for i, entry in enumerate(self.entries):
            if entry["id"] == motion_id:
                return i
        raise KeyError(f"no motion {motion_id!r} in the index (ids look like {self.entries[0]['id']!r})"
                       if self.entries else "the index is empty")

    def save(self, path: str | Path) -> tuple[Path, Path, Path]:
        """PATH.safetensors (chunk embeddings, spans, owners, feature offsets), PATH.features.npy
        (every motion's features, one float32 array read back memory-mapped: a query touches only
        the motions it localizes) and PATH.json (ids, paths, durations, fps, the model). Each is
        written to a temporary name and renamed, so an index is never left half-written."""
        from numpy.lib.format import write_array_header_1_0
        from safetensors.numpy import save_file

        tensors_path, features_path, meta_path = index_paths(path)
        tensors_path.parent.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + self.features.frames()).astype(np.int64)
        tmp = features_path.with_name(features_path.name + ".tmp")
        with open(tmp, "wb") as f:    # streamed motion by motion: memory stays bounded
            write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (int(offsets[-1]), 263)})
            for i in range(len(self.features)):
                f.write(self.features.read_bytes(i))
        os.replace(tmp, features_path)
        tensors = {"offsets": offsets, "chunk_emb": self.chunk_emb, "chunk_owner": self.chunk_owner,
                   "chunk_span": self.chunk_span}
        meta = {"version": INDEX_VERSION, "model": self.model, "fingerprint": self.fingerprint,
                "motion_features": self.motion_features, "chunk_s": self.chunk_s,
                "chunk_overlap": self.chunk_overlap, "entries": self.entries}
        for target, write in ((tensors_path, lambda p: save_file(tensors, str(p))),
                              (meta_path, lambda p: p.write_text(json.dumps(meta), encoding="utf-8"))):
            tmp = target.with_name(target.name + ".tmp")
            write(tmp)
            os.replace(tmp, target)
        return tensors_path, features_path, meta_path

    @classmethod
    def load(cls, path: str | Path) -> MotionIndex:
        from safetensors.numpy import load_file

        paths = index_paths(path)
        if not all(p.is_file() for p in paths):
            raise SearchIndexError(f"{path}: no index there ({', '.join(p.name for p in paths)}); "
                                   "build one with `trimo-search index --model EXPORT FOLDER -o INDEX`")
        tensors_path, features_path, meta_path = paths
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("version") != INDEX_VERSION:
            raise SearchIndexError(f"{meta_path}: index version {meta.get('version')} (this trimo reads "
                                   f"{INDEX_VERSION}); build it again with `trimo-search index`")
        t = load_file(str(tensors_path))
        features = FeatureStore.mapped(features_path, t["offsets"])
        return cls(model=meta["model"], fingerprint=meta["fingerprint"], motion_features=meta["motion_features"],
                   chunk_s=meta["chunk_s"], chunk_overlap=meta["chunk_overlap"], entries=meta["entries"],
                   features=features, chunk_emb=t["chunk_emb"], chunk_owner=t["chunk_owner"],
                   chunk_span=t["chunk_span"])


def index_paths(path: str | Path) -> tuple[Path, Path, Path]:
    """INDEX -> (INDEX.safetensors, INDEX.features.npy, INDEX.json); a file's own name works too."""
    path = Path(path)
    for suffix in (".json", ".safetensors", ".features.npy"):
        if path.name.endswith(suffix):
            path = path.with_name(path.name[:-len(suffix)])
    return tuple(path.with_name(path.name + suffix) for suffix in (".safetensors", ".features.npy", ".json"))


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over the model's weights (names, shapes, float32 bytes), whatever folder they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu()
        value = value.float() if value.is_floating_point() else value
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------- reading a library

def library_files(paths: Iterable[str | Path]) -> Iterator[tuple[str, Path]]:
    """(id, file) for every motion file under the given files/folders, and (id, shards.json) for
    shard sets; an id is the path relative to the folder given, without its suffix."""
    for given in map(Path, paths):
        if given.name == "shards.json" or (given / "shards.json").is_file():
            yield given.stem if given.is_file() else given.name, given
        elif given.is_dir():
            for file in sorted(p for p in given.rglob("*") if p.suffix.lower() in MOTION_SUFFIXES and p.is_file()):
                yield file.relative_to(given).with_suffix("").as_posix(), file
        else:
            yield given.stem, given


def read_file_motions(file: Path, definition: str, *, mapping: str | None = None, units: str = "auto",
                      body_model_dir: str | None = None) -> Iterable[tuple[str, np.ndarray]]:
    """('', features at 20 fps) of a mocap file, or (key, features) of every sample of a shard set
    (read lazily)."""
    from motion.features import joints_to_features
    from motion.importers import load_motion
    from motion.importers.common import MotionImportError

    if file.name == "shards.json" or file.is_dir():
        return _shard_set_motions(file, definition)
    if not file.is_file():
        raise SkippedFile(f"{file}: not found", "not_found")
    try:
        if file.suffix.lower() == ".npy":
            array = np.load(file, allow_pickle=False, mmap_mode="r")
            if array.ndim == 2 and array.shape[1] == 263:   # HumanML3D's new_joint_vecs: released features
                if definition != "humanml3d":
                    raise SkippedFile(f"{file}: 263-d features in HumanML3D's released definition, but the model "
                                      f"reads {definition!r} ones; index the joints (new_joints/) instead",
                                      "motion_features")
                return [("", np.asarray(array, dtype=np.float32))]
        joints = load_motion(file, mapping=mapping, units=units, body_model_dir=body_model_dir).to_canonical()
        return [("", joints_to_features(joints, source=str(file), definition=definition))]
    except (MotionImportError, ValueError, OSError) as err:
        raise SkippedFile(" ".join(str(err).split()), getattr(err, "reason", None) or "bad_input") from None


def _shard_set_motions(spec: Path, definition: str) -> Iterator[tuple[str, np.ndarray]]:
    """The samples of a shard set, read one at a time (a set may hold more motions than memory)."""
    from shards.reader import iter_decoded, load_index
    from shards.schema import ShardError

    try:
        index = load_index(str(spec))
        index.require_motion_features(definition, "the model reads")
    except ShardError as err:
        raise SkippedFile(str(err), err.reason) from None
    folder = spec.parent if spec.name == "shards.json" else spec

    def samples():
        try:
            for s in iter_decoded([str(folder / e.name) for e in index.shards], members=("motion.npy", "meta.json")):
                yield s["key"], s["motion"]
        except ShardError as err:
            raise SkippedFile(str(err), err.reason) from None
    return samples()


# ---------------------------------------------------------------- the searcher

class Searcher:
    """A trained model (export folder, checkpoint or run directory) loaded once, for indexing and queries."""

    def __init__(self, model: str | Path, device: str = "cpu", batch_size: int = 32, progress: bool = True,
                 backend: str = "numpy"):
        from trainer.export import load_model

        if backend not in SEARCH_BACKENDS:
            raise ValueError(f"search backend {backend!r}: choose one of {SEARCH_BACKENDS}")
        self.backend = backend
        self.model_path = str(model)
        net, tokenizer, cfg = load_model(model, device)
        self.cfg = cfg
        self.encoder = Encoder(net, tokenizer, cfg.model.retrieval.text.max_tokens, batch_size, device, progress)
        self.fingerprint = model_fingerprint(net)
        self.motion_features = net.cfg.motion_features or "trimo"
        self.has_head = getattr(net, "localization", None) is not None
        self.has_video = getattr(net.retrieval, "video_encoder", None) is not None

    # embeddings (L2-normalized rows)
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return _normalized(self.encoder.texts(texts))

    def embed_motions(self, motions: list[np.ndarray]) -> np.ndarray:
        return _normalized(self.encoder.motions(motions))

    def embed_videos(self, videos: Iterable[np.ndarray]) -> np.ndarray:
        if not self.has_video:
            raise ValueError(f"the model {self.model_path} has no video encoder (trained with use_video=false)")
        return _normalized(self.encoder.videos(videos))

    # the index
    def new_index(self) -> MotionIndex:
        return MotionIndex(model=self.model_path, fingerprint=self.fingerprint, motion_features=self.motion_features)

    def check(self, index: MotionIndex) -> None:
        if index.fingerprint != self.fingerprint:
            raise SearchIndexError(
                f"the index was built with another model ({index.model}, weights {index.fingerprint[:12]}) than "
                f"{self.model_path} ({self.fingerprint[:12]}); embeddings of two models do not compare: build the "
                f"index again with `trimo-search index --model {self.model_path} ...`, or query with --model "
                f"{index.model}")
        if index.motion_features != self.motion_features:
            raise SearchIndexError(f"the index holds {index.motion_features!r} features but the model reads "
                                   f"{self.motion_features!r} ones; build the index again with this model")

    def add(self, index: MotionIndex, paths: Iterable[str | Path], *, mapping: str | None = None,
            units: str = "auto", body_model_dir: str | None = None) -> tuple[int, list[tuple[str, str, str]]]:
        """Embed the motions of the files in `paths` that the index lacks or that changed (size,
        mtime; a changed file's old motions are dropped); unchanged files are not even read. An id
        taken by another file gets a `~2`, `~3`, ... suffix. Motions are embedded EMBED_GROUP at a
        time and their features written to disk. Returns (motions added, [(file, reason, message)]
        skipped)."""
        from tqdm import tqdm

        self.check(index)
        read_options = {"mapping": mapping, "units": units, "body_model_dir": body_model_dir}
        added, skipped, parts, entries, features = 0, [], [], [], []
        # one bar over the motions (a shard set is one file of many), not one per embedding batch
        bar, self.encoder.progress = tqdm(desc="indexing", unit=" motions", disable=not self.encoder.progress), False
        try:
            for entry, motion in self._new_motions(index, paths, read_options, skipped, parts):
                entries.append(entry)
                features.append(motion)
                added += 1
                if len(features) >= EMBED_GROUP:
                    self._append(index, entries, features, parts)
                    bar.update(len(features))
                    entries, features = [], []
            if features:
                self._append(index, entries, features, parts)
                bar.update(len(features))
        finally:
            self._merge(index, parts)
            self.encoder.progress = not bar.disable
            bar.close()
        return added, skipped

    def _new_motions(self, index: MotionIndex, paths: Iterable[str | Path], read_options: dict,
                     skipped: list, parts: list) -> Iterator[tuple[dict, np.ndarray]]:
        """(entry, features) of each motion in `paths` that the index lacks, read one at a time;
        unreadable files and too short motions go to `skipped`."""
        known = {e["path"]: (e["size"], e["mtime"]) for e in index.entries}
        ids = {e["id"] for e in index.entries}
        for motion_id, file in library_files(paths):
            path = str(file.resolve())
            stat = file.stat() if file.exists() else None
            signature = (stat.st_size, int(stat.st_mtime)) if stat else (0, 0)
            if known.get(path) == signature:
                continue
            try:
                motions = read_file_motions(file, self.motion_features, **read_options)
                if path in known:   # changed since it was indexed
                    self._merge(index, parts)   # positions shift: the chunks embedded so far go in first
                    for position in reversed([i for i, e in enumerate(index.entries) if e["path"] == path]):
                        ids.discard(index.entries[position]["id"])
                        self._drop(index, position)
                for key, features in motions:   # a shard set may break part-way: its motions so far stay
                    if len(features) < 2:
                        skipped.append((str(file), "too_short", f"{file}{':' + key if key else ''}: "
                                                                f"{len(features)} frame(s) at 20 fps"))
                        continue
                    base = f"{motion_id}/{key}" if key else motion_id
                    full_id, n = base, 1
                    while full_id in ids:
                        n += 1
                        full_id = f"{base}~{n}"
                    ids.add(full_id)
                    yield ({"id": full_id, "path": path, "key": key, "fps": FPS, "frames": len(features),
                            "duration_s": len(features) / FPS, "size": signature[0], "mtime": signature[1]},
                           np.asarray(features, dtype=np.float32))
            except SkippedFile as err:
                skipped.append((str(file), err.reason, str(err)))

    def build_index(self, paths: Iterable[str | Path], **read_options) -> tuple[MotionIndex, list]:
        index = self.new_index()
        _, skipped = self.add(index, paths, **read_options)
        return index, skipped

    def _append(self, index: MotionIndex, entries: list[dict], features: list[np.ndarray], parts: list) -> None:
        """Embed these motions' chunks into `parts` (merged by `_merge`); their features go to disk."""
        chunks, owners, spans = [], [], []
        for i, motion in enumerate(features, start=len(index.entries)):
            for start, stop in M.chunk_windows(len(motion), FPS, index.chunk_s, index.chunk_overlap):
                chunks.append(motion[start:stop])
                owners.append(i)
                spans.append((start, stop))
        parts.append((self.embed_motions(chunks), np.asarray(owners, np.int64),
                      np.asarray(spans, np.int64).reshape(-1, 2)))
        index.entries += entries
        index.features.extend(features)

    @staticmethod
    def _merge(index: MotionIndex, parts: list) -> None:
        """The chunk arrays of `parts` appended to the index's, in one concatenation; parts emptied."""
        if not parts:
            return
        emb, owners, spans = (list(x) for x in zip(*parts))
        index.chunk_emb = np.concatenate(([index.chunk_emb] if len(index.chunk_emb) else []) + emb)
        index.chunk_owner = np.concatenate([index.chunk_owner] + owners)
        index.chunk_span = np.concatenate([index.chunk_span] + spans)
        index._first = index._faiss = None
        parts.clear()

    @staticmethod
    def _drop(index: MotionIndex, position: int) -> None:
        keep = index.chunk_owner != position
        index.chunk_emb, index.chunk_span = index.chunk_emb[keep], index.chunk_span[keep]
        owner = index.chunk_owner[keep]
        index.chunk_owner = owner - (owner > position)
        del index.entries[position], index.features[position]
        index._first = index._faiss = None

    # queries
    def search_text(self, index: MotionIndex, text: str, k: int = 5) -> list[Hit]:
        return self._search(index, self.embed_texts([text])[0], k)

    def search_motion(self, index: MotionIndex, features: np.ndarray, k: int = 5) -> list[Hit]:
        """Motions like an example (263-d features of the model's definition, 20 fps)."""
        return self._search(index, self.embed_motions([np.asarray(features, np.float32)])[0], k)

    def search_video(self, index: MotionIndex, video: np.ndarray, k: int = 5) -> list[Hit]:
        """Motions like a clip: uint8 (frames, 3, H, W) at the model's video size."""
        return self._search(index, self.embed_videos([video])[0], k)

    def _search(self, index: MotionIndex, query: np.ndarray, k: int) -> list[Hit]:
        self.check(index)
        return [Hit(index.entries[m]["id"], index.entries[m]["path"], score,
                    *(float(v) / FPS for v in index.chunk_span[chunk]))
                for m, score, chunk in rank_motions(index, query, k, self.backend)]

    def moments(self, index: MotionIndex, text: str, k: int = 5, motion_id: str | None = None,
                candidates: int = 10, corpus_lambda: float = _DEFAULTS.corpus_lambda) -> list[Moment]:
        """The k best moments for `text`: in one motion (`motion_id`) or among the `candidates`
        motions whose chunks match it best."""
        self.check(index)
        if not len(index):
            return []
        query = self.embed_texts([text])[0]
        if motion_id is not None:
            m = index.position(motion_id)
            first = index.chunk_first()
            sim = index.chunk_emb[first[m]:first[m + 1]] @ query
            ranked = [(m, float(sim.max()), int(first[m] + np.argmax(sim)))]
        else:
            ranked = rank_motions(index, query, candidates, self.backend)
        found = self._head_moments(index, text, ranked, k, corpus_lambda) if self.has_head else \
            self._pyramid_moments(index, query, ranked, k)
        found.sort(key=lambda m: -m.score)
        return found[:k]

    def _head_moments(self, index, text, ranked, k, corpus_lambda) -> list[Moment]:
        motions = [np.array(index.features[m]) for m, _, _ in ranked]   # read from the memory map
        preds = self.encoder.localize(motions, [FPS] * len(ranked), [text] * len(ranked), top_k=k)
        out = []
        for (m, r, _), p in zip(ranked, preds):
            entry = index.entries[m]
            for start, end, p_se in zip(p["topk_start_s"], p["topk_end_s"], p["topk_score"]):
                if start < 0:      # a short motion has fewer spans
                    continue
                out.append(Moment(entry["id"], entry["path"], float(start), float(end),
                                  float(p_se * math.exp(corpus_lambda * r)), "head", entry["duration_s"],
                                  p["p_start"].tolist(), p["p_end"].tolist()))
        return out

    def _pyramid_moments(self, index, query, ranked, k) -> list[Moment]:
        """The temporal pyramid's best windows inside each candidate's best chunk (the whole take
        would be tens of thousands of windows for a take of minutes)."""
        out = []
        for m, _, chunk in ranked:
            motion, entry = np.array(index.features[m]), index.entries[m]   # read from the memory map
            first, stop = (int(v) for v in index.chunk_span[chunk])
            windows = first + M.pyramid_windows(stop - first, _DEFAULTS.pyramid_min, _DEFAULTS.pyramid_max,
                                                _DEFAULTS.pyramid_stride)
            scores = self.embed_motions([motion[s:e] for s, e in windows]) @ query
            for w in np.argsort(-scores, kind="stable")[:k]:
                out.append(Moment(entry["id"], entry["path"], float(windows[w, 0]) / FPS,
                                  float(windows[w, 1]) / FPS, float(scores[w]), "pyramid", entry["duration_s"]))
        return out


def rank_motions(index: MotionIndex, query: np.ndarray, k: int, backend: str = "numpy"
                 ) -> list[tuple[int, float, int]]:
    """The k motions whose best chunk matches the (normalized) query best, best first:
    (motion, its best chunk's cosine, that chunk); exact with either backend."""
    if not len(index):
        return []
    if backend == "faiss":
        return _rank_faiss(index, query, k)
    sim = index.chunk_emb @ query
    first = index.chunk_first()
    scores = np.maximum.reduceat(sim, first[:-1])
    return [(int(m), float(scores[m]), _best_chunk(sim, first, m)) for m in _top(scores, k)]


def _rank_faiss(index: MotionIndex, query: np.ndarray, k: int) -> list[tuple[int, float, int]]:
    """rank_motions with FAISS's exact inner-product search over the chunks. Every chunk scoring at
    least the k-th motion's score belongs to one of the k best motions, so the best
    k * (most chunks of a motion) chunks hold each of their best chunks: the result is exact."""
    first = index.chunk_first()
    n = min(len(index.chunk_emb), k * int(np.diff(first).max()))
    scores, chunks = index.faiss().search(np.asarray(query, np.float32)[None], n)
    out: list[tuple[int, float, int]] = []
    seen: set[int] = set()
    for score, chunk in zip(scores[0].tolist(), chunks[0].tolist()):
        m = int(index.chunk_owner[chunk])
        if m not in seen:
            seen.add(m)
            out.append((m, score, chunk))
            if len(out) == k:
                break
    return out


def _best_chunk(sim: np.ndarray, first: np.ndarray, motion: int) -> int:
    """The position of the motion's best chunk (the first on ties)."""
    return int(first[motion] + np.argmax(sim[first[motion]:first[motion + 1]]))


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest scores, best first (the lower position first on ties), without
    sorting all of them."""
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
        kth = scores[part].min()
        part = np.flatnonzero(scores >= kth)          # every tie of the k-th score, in position order
    else:
        part = np.arange(len(scores))
    return part[np.argsort(-scores[part], kind="stable")][:k]


def _normalized(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def as_dicts(items: list) -> list[dict]:
    return [asdict(i) for i in items]
