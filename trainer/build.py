"""Build the model, tokenizer and shard datasets of an experiment config."""
from __future__ import annotations

from pathlib import Path

from modeling.text_encoder import load_tokenizer
from modeling.trimo_model import TrimoModel
from shards.reader import ShardDataset, iter_raw_shard, load_index
from shards.schema import ShardError

DEMO_HINT = ("build the demo shards with `trimo-build-demo --out data/demo-small --size small` "
             "and point data.*.index at data/demo-small/<set>/shards.json, or write your own with shards.writer")


def build_model(cfg) -> tuple[TrimoModel, object]:
    """(model, tokenizer); the feature statistics are set later, from the retrieval shard index."""
    return TrimoModel(cfg.model), load_tokenizer(cfg.model.retrieval.text)


def _check_index(path: str, what: str) -> None:
    local = "://" not in path
    target = Path(path if path.endswith(".json") else f"{path.rstrip('/')}/shards.json")
    if local and not target.is_file():
        raise FileNotFoundError(f"no shard index at {target} (data.{what}.index): {DEMO_HINT}")


def shard_dataset(set_cfg, what: str, seed: int, rank: int, world: int, training: bool, **kwargs) -> ShardDataset:
    _check_index(set_cfg.index, what)
    try:
        return ShardDataset(load_index(set_cfg.index), set_cfg.urls, training=training, seed=seed, rank=rank,
                            world_size=world, shuffle_buffer=set_cfg.shuffle_buffer, min_frames=set_cfg.min_frames,
                            max_frames=set_cfg.max_frames, load_joints=False, split=getattr(set_cfg, "split", ""),
                            **kwargs)
    except ShardError as err:
        raise ShardError(f"data.{what}: {err}", err.reason) from None


def agree_on_motion_features(cfg, datasets: dict[str, ShardDataset]) -> str:
    """The 263-d feature definition of the training and validation sets, which must be one, and the
    model's (cfg.model.motion_features, set here on a new run); raises ShardError naming both."""
    indices = [ds.index for ds in datasets.values()]
    indices += [load_index(path) for path in (cfg.validation.retrieval_index, cfg.validation.localization_index)
                if path and cfg.validation.every]
    expected = cfg.model.motion_features or indices[0].motion_features
    user = "the model reads" if cfg.model.motion_features else f"{indices[0].location} holds"
    for index in indices:
        index.require_motion_features(expected, user)
    cfg.model.motion_features = expected
    return expected


VIDEO_PROBE_SAMPLES = 16


def has_video(dataset: ShardDataset, probe: int = VIDEO_PROBE_SAMPLES) -> bool:
    """Whether any of the first `probe` samples of the set's first shard carries a video.mp4."""
    for i, raw in enumerate(iter_raw_shard(dataset.shards[0][1])):
        if "video.mp4" in raw:
            return True
        if i + 1 >= probe:
            break
    return False


def build_datasets(cfg, rank: int, world: int) -> dict[str, ShardDataset]:
    out = {}
    rcfg = cfg.model.retrieval
    if cfg.model.use_retrieval:
        load_video = cfg.data.load_video and rcfg.use_video
        out["retrieval"] = shard_dataset(cfg.data.retrieval, "retrieval", cfg.run.seed, rank, world, True,
                                         load_video=load_video,
                                         num_video_frames=rcfg.video.n_frames, video_size=cfg.data.video_size)
        if load_video and not has_video(out["retrieval"]):
            raise ShardError(f"data.retrieval: {out['retrieval'].index.location} has no video.mp4 in its first "
                             f"{VIDEO_PROBE_SAMPLES} samples, but model.retrieval.use_video is on; set "
                             "model.retrieval.use_video=false (text-motion only) or write the shards with videos "
                             "(trimo-make-shards --video)", "no_video")
    if cfg.model.use_localization:
        out["localization"] = shard_dataset(cfg.data.localization, "localization", cfg.run.seed + 1, rank, world,
                                            True, load_video=False, crop_to_caption=False)
    return out
