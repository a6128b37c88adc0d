"""CONTRIBUTING.md's worked examples run as written: each code block is saved as a module of a
plugin, imported in a fresh process (registries are global), and used the way the text says."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"
EXAMPLES = dict(re.findall(r"<!-- example: (\S+) -->\s*```(?:python|yaml|toml)\n(.*?)```", GUIDE.read_text(), re.S))

PRELUDE = '''
import json
import sys
from pathlib import Path

import numpy as np

from rsretrieve.cli.app import app


def cli(*args, code=0):
    try:
        app([str(a) for a in args])
    except SystemExit as exc:
        assert (exc.code or 0) == code, (args, exc.code)
    else:
        assert code == 0, args
'''


def run_example(tmp_path: Path, names: list[str], check: str) -> str:
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    for name in names:
        (plugin / f"example_{name}.py").write_text(EXAMPLES[name])
    imports = "".join(f"import example_{name}  # noqa: F401\n" for name in names)
    env = {**os.environ, "PYTHONPATH": str(plugin), "RSRETRIEVE_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", PRELUDE + imports + textwrap.dedent(check) + "\nprint('EXAMPLE OK')"],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and "EXAMPLE OK" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_the_guide_holds_every_example() -> None:
    assert set(EXAMPLES) == {"dataset", "fixture", "adapter", "adapter-package", "encoder", "card", "metric"}


def test_a_new_dataset_format_indexes_and_evaluates_from_the_cli(tmp_path: Path) -> None:
    run_example(tmp_path, ["dataset", "fixture"], """
        from rsretrieve.datasets import open_dataset

        cli("sample", "npy", "--format", "npy-folder", "--n-samples", 20)
        data = open_dataset("npy-folder", Path("npy"))
        assert not type(data).__abstractmethods__ and len(data.samples) == 20
        assert {s.sensor for s in data.samples} == {"s1", "s2"} and data.qrels_path == Path("npy/qrels.tsv")
        s2 = next(s.key for s in data.samples if s.sensor == "s2")
        assert data.read_batch([s2]).images.shape == (1, 12, 120, 120)
        cli("list", "datasets")
        cli("index", "--dataset", "npy-folder", "--data", "npy", "--out", "idx", "--model", "random")
        cli("eval", "--index", "idx", "-m", "ndcg@10,recall@10")
        report = json.loads(Path("idx.results.json").read_text())
        assert report["results"]["all"]["n_queries"] == 1, report["results"]["all"]
        cli("index", "--dataset", "npy-folder", "--data", "npy", "--out", "idx", "--model", "random", "--split", "train", code=2)
    """)


def test_a_new_band_adapter_serves_an_index(tmp_path: Path) -> None:
    run_example(tmp_path, ["adapter"], """
        import torch
        from rsretrieve.adapters import build_adapter
        from rsretrieve.datasets.sensors import BANDS
        from rsretrieve.errors import ConfigError

        x = torch.rand(2, 12, 8, 8) * 5000
        assert torch.equal(build_adapter("swir", BANDS["s2"])(x), (x[:, [11, 8, 3]] / 4000).clamp(0, 1))
        try:
            build_adapter("swir", BANDS["s1"])
            raise AssertionError("swir took Sentinel-1 bands")
        except ConfigError as exc:
            assert "needs Sentinel-2 bands" in str(exc)
        cli("sample", "clm", "--n-samples", 20)
        cli("index", "--data", "clm", "--out", "idx", "--model", "rsretrieve-tiny", "--s2-adapter", "swir", "--sensor", "s2", "--limit", 6)
        assert json.loads(Path("idx/manifest.json").read_text())["adapters"] == {"s2": "swir"}
        cli("search", "--index", "idx", "--text", "burned area", "-k", 3)
    """)


def test_the_adapter_package_is_found_by_its_entry_point(tmp_path: Path) -> None:
    """The packaging step as the guide writes it: the adapter module and pyproject.toml built
    and installed (into a folder of its own, not this venv), then a bare `rsretrieve` process
    finds `swir` by the entry point alone; without the package it is an error naming the group."""
    package = tmp_path / "swir-adapter"
    package.mkdir()
    (package / "swir_adapter.py").write_text(EXAMPLES["adapter"])
    (package / "pyproject.toml").write_text(EXAMPLES["adapter-package"])
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(package)], check=True, capture_output=True)
    env = {**os.environ, "RSRETRIEVE_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    rsretrieve = [sys.executable, "-m", "rsretrieve"]
    subprocess.run([*rsretrieve, "sample", "clm", "--n-samples", "20"], cwd=tmp_path, env=env, check=True, capture_output=True)
    index = [*rsretrieve, "index", "--data", "clm", "--model", "rsretrieve-tiny", "--s2-adapter", "swir", "--sensor", "s2", "--limit", "4"]
    without = subprocess.run([*index, "--out", "a"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert without.returncode == 2 and "entry-point group 'rsretrieve.adapters'" in without.stderr
    found = subprocess.run([*index, "--out", "b"], cwd=tmp_path, env={**env, "PYTHONPATH": str(site)}, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr[-2000:]
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["adapters"] == {"s2": "swir"}


def test_a_new_model_family_is_a_zoo_card_and_guards_its_weights(tmp_path: Path) -> None:
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "spectral-probe.yaml").write_text(EXAMPLES["card"])
    out = run_example(tmp_path, ["encoder"], """
        import os
        from safetensors.numpy import save_file
        from rsretrieve.zoo import resolve_model

        os.environ["RSRETRIEVE_ZOO"] = "cards"
        weights = Path(os.environ["RSRETRIEVE_HOME"]) / "checkpoints" / "spectral-probe.safetensors"
        cli("index", "--model", "spectral-probe", "--out", "idx", code=2)   # weights missing: says where they go
        weights.parent.mkdir(parents=True)
        rng = np.random.default_rng(0)
        save_file({n: rng.standard_normal(s).astype(np.float32) for n, s in (("s2", (12, 16)), ("s1", (2, 16)), ("words", (64, 16)))}, str(weights))
        assert resolve_model("spectral-probe").backend == "spectral-probe"
        cli("models")
        cli("sample", "clm", "--n-samples", 20)
        cli("index", "--data", "clm", "--model", "spectral-probe", "--out", "idx")
        cli("eval", "--index", "idx", "-m", "ndcg@10")
        save_file({n: rng.standard_normal(s).astype(np.float32) for n, s in (("s2", (12, 16)), ("s1", (2, 16)), ("words", (64, 16)))}, str(weights))
        cli("search", "--index", "idx", "--text", "water", code=2)          # other weights: refused
    """)
    assert "spectral-probe" in out and "weights_sha256 mismatch" in out


def test_a_new_metric_backend_equals_trec_eval(tmp_path: Path) -> None:
    run_example(tmp_path, ["metric"], """
        from rsretrieve.metrics import per_query
        from rsretrieve.runs import Run, write_run

        rng = np.random.default_rng(0)
        docs = [f"d{i:03d}" for i in range(60)]
        qrels = {f"q{q}": {d: int(rng.integers(-1, 3)) for d in rng.choice(docs, 15, replace=False)} for q in range(8)}
        run = Run.from_dict({f"q{q}": {d: float(rng.integers(0, 5)) for d in docs} for q in range(7)})  # ties; q7 missing
        qids = [q for q, judged in qrels.items() if any(g > 0 for g in judged.values())]
        metrics = ["precision@5", "precision@10", "recall@20", "hit_rate@3"]
        mine, reference = per_query(qrels, run, metrics, qids, "cutoffs"), per_query(qrels, run, metrics, qids, "trec_eval")
        for label in metrics:
            np.testing.assert_allclose(mine[label], reference[label], atol=1e-12, err_msg=label)
        write_run(run, Path("run.trec"))
        Path("queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": q}) + "\\n" for q in qrels))
        Path("qrels.txt").write_text("".join(f"{q} 0 {d} {g}\\n" for q, judged in qrels.items() for d, g in judged.items()))
        cli("eval", "--run", "run.trec", "--qrels", "qrels.txt", "--queries", "queries.jsonl", "--backend", "cutoffs", "-m", "precision@10,recall@20")
        cli("eval", "--run", "run.trec", "--qrels", "qrels.txt", "--queries", "queries.jsonl", "--backend", "cutoffs", "-m", "ndcg@10", code=2)
    """)


@pytest.mark.parametrize("name", ["dataset", "fixture", "adapter", "encoder", "metric"])
def test_examples_hold_no_pickle_and_no_assert(name: str) -> None:
    assert "pickle.load" not in EXAMPLES[name] and "allow_pickle=True" not in EXAMPLES[name]
    assert not re.search(r"^\s*assert ", EXAMPLES[name], re.M)
