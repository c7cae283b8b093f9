"""The config system: defaults <- YAML <- overrides, typed, unknown keys named with a suggestion."""
from dataclasses import dataclass, field

import pytest

from configs.loading import ConfigError, load_config, load_run_config, save_config, split_cli, to_yaml


@dataclass
class OptimCfg:
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class DemoCfg:
    name: str = "demo"
    seed: int = 0
    use_video: bool = True
    optim: OptimCfg = field(default_factory=OptimCfg)
    extra: dict[str, int] = field(default_factory=dict)


def test_layers_apply_in_order(tmp_path):
    yml = tmp_path / "a.yaml"
    yml.write_text("seed: 3\noptim:\n  lr: 0.5\n")
    cfg = load_config(DemoCfg, [yml], ["optim.lr=0.25", "use_video=false", "optim.betas=[0.8,0.9]"])
    assert cfg.seed == 3 and cfg.optim.lr == 0.25 and cfg.use_video is False
    assert list(cfg.optim.betas) == [0.8, 0.9]
    assert cfg.optim.weight_decay == 0.01  # untouched default


def test_unknown_key_in_override_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr'.*did you mean 'optim.lr'"):
        load_config(DemoCfg, [], ["optim.lrr=1"])


def test_unknown_key_in_file_names_the_file(tmp_path):
    yml = tmp_path / "bad.yaml"
    yml.write_text("sed: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(DemoCfg, [yml])
    assert "bad.yaml" in str(err.value) and "'sed'" in str(err.value) and "did you mean 'seed'" in str(err.value)


def test_free_form_dict_accepts_user_keys():
    cfg = load_config(DemoCfg, [], ["extra.anything=4"])
    assert cfg.extra["anything"] == 4


def test_type_errors_are_reported():
    with pytest.raises(ConfigError, match="seed"):
        load_config(DemoCfg, [], ["seed=abc"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(DemoCfg, [], ["seed"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(DemoCfg, ["/nonexistent.yaml"])


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(DemoCfg, [], ["name=run1", "optim.lr=0.003"])
    path = save_config(cfg, tmp_path / "run")
    assert path.read_text() == to_yaml(cfg)
    again = load_run_config(DemoCfg, tmp_path / "run")
    assert to_yaml(again) == to_yaml(cfg)


def test_split_cli():
    overrides, rest = split_cli(["--config", "x.yaml", "a.b=1", "--resume", "latest", "c=2"])
    assert overrides == ["a.b=1", "c=2"] and rest == ["--config", "x.yaml", "--resume", "latest"]
