import pytest

from rsretrieve.config import from_mapping, read_mapping
from rsretrieve.errors import ConfigError
from rsretrieve.registry import Registry, did_you_mean
from rsretrieve.index import IndexSettings


def test_did_you_mean_suggests_close_names() -> None:
    assert did_you_mean("rbg", ["rgb", "sar"]) == " Did you mean 'rgb'?"
    assert did_you_mean("zzz", ["rgb", "sar"]) == ""


def test_registry_unknown_name_lists_choices() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("alpha")(1)
    with pytest.raises(ConfigError, match="unknown widget 'alpah'. Did you mean 'alpha'"):
        reg.get("alpah")


def test_registry_rejects_duplicates_unless_overwrite() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("a")(1)
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("a")(2)
    reg.register("a", overwrite=True)(3)
    assert reg.get("a") == 3


def test_lazy_entries_import_on_first_use() -> None:
    reg: Registry[object] = Registry("thing")
    reg.register_lazy("join", "os.path:join")
    assert "join" in reg.names()
    import os.path

    assert reg.get("join") is os.path.join


def test_config_rejects_unknown_and_missing_keys(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="unknown key 'knd'. Did you mean 'kind'"):
        from_mapping(IndexSettings, {"knd": "flat"}, "cfg.json")
    assert from_mapping(IndexSettings, {"kind": "hnsw"}, "cfg.json").kind == "hnsw"
    path = tmp_path / "c.yaml"
    path.write_text("kind: ivf\nnprobe: 4\n")
    assert from_mapping(IndexSettings, read_mapping(path), str(path)).nprobe == 4
    with pytest.raises(ConfigError, match="unknown index kind 'hnws'. Did you mean 'hnsw'"):
        IndexSettings(kind="hnws")
