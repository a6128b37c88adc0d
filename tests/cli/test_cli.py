"""The CLI end to end, and every bad input as one clear line with exit code 2."""

import json
import re
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from rsretrieve.cli.app import app
from tests.conftest import first_key, replace_image

runner = CliRunner()
# typer turns every command's signature into click parameters on each invoke (a tenth of a
# second, some 300 times a run); the command is built once and handed to the runner instead
COMMAND = get_command(app)


def invoke(*args: object):  # noqa: ANN201
    with mock.patch("typer.testing._get_command", lambda _: COMMAND):
        return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result, pattern: str) -> None:  # noqa: ANN001
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    # stage notes ("loading encoder ... ...") may come first; the error is one line
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.endswith(" ...")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert __import__("re").search(pattern, lines[0]), lines[0]


def test_help_and_version() -> None:
    assert invoke("--help").exit_code == 0
    result = invoke("--version")
    assert result.exit_code == 0 and "rsretrieve 0.1.0" in result.stdout


def test_sample_index_search_eval(tmp_path) -> None:  # noqa: ANN001
    data, idx = tmp_path / "data", tmp_path / "idx"
    assert invoke("sample", data, "--n-samples", 20).exit_code == 0
    result = invoke("index", "--data", data, "--out", idx, "--model", "rsretrieve-tiny", "--batch-size", 4)
    assert result.exit_code == 0, result.output
    assert "index" in result.stdout and (idx / "manifest.json").is_file()

    result = invoke("search", "--index", idx, "--text", "flooded fields", "-k", 3)
    assert result.exit_code == 0 and "text: flooded fields" in result.stdout

    run = tmp_path / "run.trec"
    result = invoke("search", "--index", idx, "--queries", data / "queries.jsonl", "--out", run, "--sensor", "s1")
    assert result.exit_code == 0 and run.is_file()
    assert all(line.split()[2].split("_")[0] in {"benv2s1", "mmflood", "sen1flood", "quakeset"}
               for line in run.read_text().splitlines())

    out = tmp_path / "results.json"
    result = invoke("eval", "--index", idx, "--qrels", data / "qrels", "--out", out, "-m", "ndcg@10,mrr", "--save-run", tmp_path / "all.json")
    assert result.exit_code == 0, result.output
    assert "retrieval metrics" in result.stdout and "ndcg@10" in result.stdout
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"all", "s1", "s2"} and report["metrics"] == ["ndcg@10", "mrr"]

    saved = tmp_path / "scored.json"
    result = invoke("eval", "--run", tmp_path / "all.json", "--qrels", data / "qrels",
                    "--queries", data / "queries.jsonl", "-m", "ndcg@10,mrr", "--out", saved)
    assert result.exit_code == 0, result.output
    again = json.loads(saved.read_text())
    for name in ("all", "s1", "s2"):  # the saved slice runs reproduce every column exactly
        assert again["results"][name]["scores"] == report["results"][name]["scores"]
    assert again["source"]["slices"] == "saved"

    result = invoke("eval", "--index", idx)  # qrels and queries default to the dataset's
    assert result.exit_code == 0 and (tmp_path / "idx.results.json").is_file()  # beside what was scored


def test_eval_run_labels_lone_runs_filtered_and_warns_on_shallow_runs(index_dir, sample_root, tmp_path) -> None:  # noqa: ANN001
    queries, qrels = sample_root / "queries.jsonl", sample_root / "qrels"
    run = tmp_path / "top5.trec"
    assert invoke("search", "--index", index_dir, "--queries", queries, "--out", run, "-k", 5).exit_code == 0
    result = invoke("eval", "--run", run, "--qrels", qrels, "--queries", queries, "-m", "ndcg@10,mrr")
    assert result.exit_code == 0, result.output
    assert "S1 (filtered)" in result.stdout and "Sentinel-1" not in result.stdout
    assert "warning: all: ndcg@10 is computed on a run only 5 deep" in " ".join(result.stderr.split())
    assert "the (filtered) columns are the all-sensor run" in " ".join(result.stderr.split())
    report = json.loads((tmp_path / "top5.results.json").read_text())
    assert set(report["results"]) == {"all", "s1-filtered", "s2-filtered"} and report["backend"] == "trec_eval"
    # search --out defaults to the depth eval uses: the whole 35-sample corpus here
    assert invoke("search", "--index", index_dir, "--queries", queries, "--out", tmp_path / "deep.trec").exit_code == 0
    assert len((tmp_path / "deep.trec").read_text().splitlines()) == 35 * len(queries.read_text().splitlines())


def test_eval_backends_agree_and_bad_runs_are_named_by_line(index_dir, sample_root, tmp_path) -> None:  # noqa: ANN001
    queries, qrels = sample_root / "queries.jsonl", sample_root / "qrels"
    for backend in ("trec_eval", "ranx"):
        result = invoke("eval", "--index", index_dir, "--backend", backend, "--out", tmp_path / f"{backend}.json")
        assert result.exit_code == 0, result.output
    ours, theirs = (json.loads((tmp_path / f"{b}.json").read_text())["results"] for b in ("trec_eval", "ranx"))
    for name in ours:
        assert ours[name]["scores"] == pytest.approx(theirs[name]["scores"], abs=1e-9)
    out = tmp_path / "r.json"
    assert_user_error(invoke("eval", "--index", index_dir, "--backend", "trec-eval", "--out", out), "Did you mean 'trec_eval'")
    bad = tmp_path / "bad.trec"
    bad.write_text("q-water Q0 benv2s2_000000 1 0.5 x\nq-water Q0 benv2s2_000000 2 0.4 x\n")
    assert_user_error(invoke("eval", "--run", bad, "--qrels", qrels, "--queries", queries, "--out", out),
                      r"bad.trec:2: query 'q-water' lists document 'benv2s2_000000' twice")
    bad.write_text('[["q-water", "benv2s2_000000", 1.0]]')
    assert_user_error(invoke("eval", "--run", bad, "--qrels", qrels, "--queries", queries, "--out", out),
                      r"bad.trec: a JSON run is an object")
    assert_user_error(invoke("eval", "--run", bad, "--qrels", qrels, "--queries", queries, "--out", tmp_path),
                      r"cannot write .*: it is a folder")
    assert not out.exists()


def test_demo_runs_on_the_embedded_sample(tmp_path) -> None:  # noqa: ANN001
    result = invoke("demo", "--out", tmp_path / "demo", "--limit", 24)
    assert result.exit_code == 0, result.output
    assert "retrieval metrics" in result.stdout and "ndcg@1000" in result.stdout
    assert (tmp_path / "demo" / "index.results.json").is_file()
    # New shipped weights (scripts/train_default.py) make the demo's own index stale: rebuilt, not refused.
    manifest = tmp_path / "demo" / "index" / "manifest.json"
    record = json.loads(manifest.read_text())
    record["encoder"]["weights_sha256"] = record["plan_id"] = "0" * 64  # as an index of the old weights has
    manifest.write_text(json.dumps(record))
    again = invoke("demo", "--out", tmp_path / "demo", "--limit", 24)
    assert again.exit_code == 0 and "index " in again.stderr and " built" in again.stderr, again.output
    assert json.loads(manifest.read_text())["encoder"]["weights_sha256"] != "0" * 64


def test_list_registries() -> None:
    assert set(invoke("list", "adapters").stdout.split()) >= {"rgb", "false-color", "sar", "linear"}
    assert "crisislandmark" in invoke("list", "datasets").stdout
    assert "rsretrieve-tiny" in invoke("list", "architectures").stdout
    renamed = invoke("list", "models")
    assert "rsretrieve-tiny" in renamed.stdout and "now `rsretrieve list architectures`" in renamed.stderr
    assert_user_error(invoke("list", "adapter"), "Did you mean 'adapters'")


# ---- bad input: one line, exit 2, no output written ---------------------------------


def _index(data: Path, out: Path, *extra: object):  # noqa: ANN202
    return invoke("index", "--data", data, "--out", out, *extra)


def _corrupt_missing_shard(root: Path) -> str:
    (root / "mmflood.h5").unlink()
    return r"shard file .*mmflood.h5 \(linked from key 'mmflood_\d+'\) not found"


def _corrupt_broken_link(root: Path) -> str:
    key = first_key(root, "cabuar")
    with h5py.File(root / "crisislandmark.h5", "a") as main:
        del main[key]
        main[key] = h5py.ExternalLink("cabuar.h5", "/missing")
    return f"broken link: key '{key}'"


def _corrupt_outside_link(root: Path) -> str:
    key = first_key(root, "cabuar")
    with h5py.File(root / "crisislandmark.h5", "a") as main:
        del main[key]
        main[key] = h5py.ExternalLink("/etc/passwd.h5", key)
    return f"key '{key}' links outside the dataset folder"


def _replace_image(root: Path, prefix: str, image: np.ndarray) -> str:
    key = first_key(root, prefix)
    replace_image(root, key, image)
    return key


def _corrupt_band_count(root: Path) -> str:
    key = _replace_image(root, "benv2s1", np.zeros((12, 120, 120), np.float32))
    return rf"key '{key}': image shape \(12, 120, 120\) does not match sensor s1"


@pytest.mark.parametrize("corrupt", [_corrupt_missing_shard, _corrupt_broken_link, _corrupt_outside_link, _corrupt_band_count])
def test_index_rejects_broken_datasets(sample_copy, tmp_path, corrupt) -> None:  # noqa: ANN001
    pattern = corrupt(sample_copy)
    out = tmp_path / "idx"
    assert_user_error(_index(sample_copy, out), pattern)
    assert not out.exists()


def test_nan_pixels_replaced_by_default_rejected_with_strict(sample_copy, tmp_path) -> None:  # noqa: ANN001
    image = np.full((12, 120, 120), 500.0, np.float32)
    image[0, 0, 0] = np.nan
    key = _replace_image(sample_copy, "benv2s2", image)
    assert_user_error(_index(sample_copy, tmp_path / "strict", "--strict"), f"key '{key}': 1 NaN/inf pixels")
    assert not (tmp_path / "strict").exists()
    result = _index(sample_copy, tmp_path / "lenient")
    assert result.exit_code == 0 and "1 non-finite pixels replaced" in result.stdout


def test_bad_filter_options(sample_root, tmp_path) -> None:  # noqa: ANN001
    assert_user_error(_index(sample_root, tmp_path / "x", "--split", "train", "--limit", "0"), "--limit must be at least 1")
    assert_user_error(_index(sample_root, tmp_path / "x", "--sensor", "s3"), "unknown sensor 's3'")


def test_empty_corpus_message(sample_copy, tmp_path) -> None:  # noqa: ANN001
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(sample_copy / "metadata.parquet")
    pq.write_table(table.set_column(1, "split", pa.array(["train"] * table.num_rows)), sample_copy / "metadata.parquet")
    assert_user_error(_index(sample_copy, tmp_path / "x"), "no samples left after filters")


def test_unknown_names(sample_root, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    with monkeypatch.context() as patch:  # a misspelt adapter is named before --model is resolved (open_clip's import)
        patch.setattr("rsretrieve.zoo.resolve_model", lambda *a: pytest.fail("the model was resolved"))
        assert_user_error(_index(sample_root, tmp_path / "x", "--model", "ViT-B-32", "--s2-adapter", "rbg"),
                          "unknown band adapter 'rbg'. Did you mean 'rgb'")
    assert_user_error(_index(sample_root, tmp_path / "x", "--model", "ViT-B-23"), "Did you mean 'ViT-B-32'")
    assert_user_error(_index(sample_root, tmp_path / "x", "--index-type", "hsnw"), "unknown index kind 'hsnw'")
    assert not (tmp_path / "x").exists()


def test_eval_input_errors(index_dir, sample_root, tmp_path) -> None:  # noqa: ANN001
    bad_queries = tmp_path / "queries.jsonl"
    bad_queries.write_text('{"_id": "q-water", "text": "water"}\n{"_id": oops}\n')
    out = tmp_path / "r.json"
    assert_user_error(invoke("eval", "--index", index_dir, "--queries", bad_queries, "--out", out), r"queries.jsonl:2: malformed JSON line")
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q-water 0 benv2s2_000000 1\nq-unknown 0 benv2s2_000000 1\n")
    assert_user_error(invoke("eval", "--index", index_dir, "--qrels", qrels, "--out", out), "unknown query id 'q-unknown'")
    assert_user_error(invoke("eval", "--index", index_dir, "-m", "ndgc@10", "--out", out), "unknown metric 'ndgc@10'")
    assert_user_error(invoke("eval", "--index", tmp_path, "--out", out), "manifest.json not found")
    assert_user_error(invoke("eval", "--index", index_dir, "--model", "rsretrieve-tiny", "--seed", "4", "--out", out), r"was built with open_clip:rsretrieve-tiny \[random init \(seed 0\)\]")
    assert not out.exists()


def test_index_from_config_with_overrides(sample_root, tmp_path) -> None:  # noqa: ANN001
    config = tmp_path / "job.yaml"
    config.write_text(f"data: {sample_root}\nmodel: rsretrieve-tiny\nsensor: s2\nindex: hnsw\n")
    result = invoke("index", "--config", config, "--out", tmp_path / "idx", "--limit", 6)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["index"]["kind"] == "hnsw" and manifest["counts"] == {"total": 6, "s2": 6}
    config.write_text("sensr: s2\n")
    assert_user_error(invoke("index", "--config", config, "--out", tmp_path / "y"), r"job.yaml: unknown key 'sensr'. Did you mean 'sensor'")


def test_shipped_configs_are_valid() -> None:
    from rsretrieve.config import IndexJob, from_mapping, read_mapping

    configs = sorted((Path(__file__).parents[2] / "configs" / "index").glob("*.yaml"))
    assert configs
    for path in configs:
        from_mapping(IndexJob, read_mapping(path), str(path))


def test_train_then_index_and_eval_with_the_trained_model(tmp_path) -> None:  # noqa: ANN001
    from rsretrieve.datasets.fixtures.crisislandmark import generate_sample

    data = generate_sample(tmp_path / "data", n_samples=30, seed=2, train_fraction=0.6)
    run = tmp_path / "run"
    result = invoke("train", "--data", data, "--out", run, "--epochs", 2, "--width", 16, "--batch-size", 8)
    assert result.exit_code == 0, result.output
    assert "epoch   2" in result.stderr and "best epoch" in result.stdout
    assert (run / "best" / "model.safetensors").is_file() and (run / "last" / "optimizer.safetensors").is_file()
    result = invoke("train", "--data", data, "--out", run, "--epochs", 3, "--width", 16, "--batch-size", 8, "--resume")
    assert result.exit_code == 0 and "epoch   3" in result.stderr and "epoch   1" not in result.stderr
    assert _index(data, tmp_path / "idx", "--model", run / "best").exit_code == 0
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["encoder"]["backend"] == "rsretrieve" and manifest["adapters"] == {"s2": "bundled", "s1": "bundled"}
    assert invoke("eval", "--index", tmp_path / "idx").exit_code == 0
    assert_user_error(_index(data, tmp_path / "x", "--model", run / "best", "--s2-adapter", "rgb"), "holds its own band adapters")
    assert_user_error(invoke("train", "--data", data, "--out", tmp_path / "r2", "--freeze", "all"), "--freeze must be one of")
    assert_user_error(invoke("train", "--data", data, "--out", run), "already holds a training run")
    assert_user_error(invoke("train", "--data", data, "--out", tmp_path / "r3", "--adapter", "rgb", "--s2-adapter", "linear"),
                      "--adapter is the old name of --s2-adapter/--s1-adapter")


def test_eval_without_flags_scores_the_shipped_model_on_the_embedded_sample() -> None:
    result = invoke("eval", "-m", "ndcg@10")
    assert result.exit_code == 0, result.output
    from rsretrieve.paths import cache_home

    report = json.loads((cache_home() / "indexes" / "default-sample.results.json").read_text())
    assert report["source"]["encoder"]["backend"] == "rsretrieve"
    assert report["results"]["all"]["scores"]["ndcg@10"] > 0.6  # far above chance (~0.13)


def test_models_says_for_every_card_where_weights_come_from_go_and_how_to_use_them() -> None:
    from rsretrieve.zoo import load_zoo

    result = invoke("models")
    assert result.exit_code == 0
    blocks = {block.split()[0]: block for block in result.stdout.split("\n\n")[1:] if block.strip()}
    assert set(blocks) == set(load_zoo())
    for name, block in blocks.items():
        assert (f"use:    rsretrieve index --model {name} --data data/crisislandmark --out runs/{name} && "
                f"rsretrieve eval --index runs/{name}") in block  # a whole command, the release's folder included
        assert "weights present" in block or "weights MISSING" in block
        assert "$RSRETRIEVE_HOME" not in block  # pasted, the download lands where rsretrieve looks
    assert "put at: " in blocks["closp-rn"] and "from:   hf-hub DarthReca/CLOSP-RN" in blocks["closp-rn"]
    assert "weights MISSING" in blocks["closp-rn"] and "weights present" in blocks["rsretrieve-default"]
    assert "cannot retrieve from text" in blocks["closp-rn"]  # torchgeo's backbones are not offered
    from rsretrieve.zoo import checkpoints_dir

    assert f"--local-dir {checkpoints_dir()}/CLOSP-RN)" in blocks["closp-rn"]


def test_the_zoo_table_of_the_docs_lists_every_card() -> None:
    from rsretrieve.zoo import load_zoo

    text = (Path(__file__).resolve().parents[2] / "docs" / "models.md").read_text(encoding="utf-8")
    table = text[text.index("| card | backend | weights"):]
    rows = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert rows == set(load_zoo())


def test_leaderboard_check_passes_then_fails_on_a_perturbed_expected_file(sample_root, tmp_path) -> None:  # noqa: ANN001
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: t\ndata: {sample_root}\nmodels: [rsretrieve-tiny-random, random]\nmetrics: [ndcg@10, mrr]\n")
    expected = tmp_path / "expected.json"
    out = tmp_path / "out"
    result = invoke("leaderboard", suite, "--out", out, "--write-expected", expected)
    assert result.exit_code == 0, result.output
    assert "# Leaderboard: t" in result.stdout and (out / "leaderboard.md").is_file()
    assert "rsretrieve-tiny-random: embedding: done, 35/35 (100%)" in result.stderr  # progress in a log, per model (the test split)
    assert "scoring 3 slices with trec_eval" in result.stderr
    assert invoke("leaderboard", suite, "--out", out, "--check", expected).exit_code == 0
    data = json.loads(expected.read_text())
    data["rows"][0]["scores"]["s1"]["mrr"] += 0.2
    expected.write_text(json.dumps(data))
    result = invoke("leaderboard", suite, "--out", out, "--check", expected)
    assert result.exit_code == 1
    assert "drift: " in result.stderr and "mrr (s1)" in result.stderr and "failed (1 differences)" in result.stderr


def test_fuse_sensor_runs_and_score(index_dir, sample_root, tmp_path) -> None:  # noqa: ANN001
    queries = sample_root / "queries.jsonl"
    for sensor in ("s1", "s2"):
        assert invoke("search", "--index", index_dir, "--queries", queries, "--sensor", sensor, "--out", tmp_path / f"{sensor}.trec").exit_code == 0
    fused = tmp_path / "fused.json"
    result = invoke("fuse", tmp_path / "s1.trec", tmp_path / "s2.trec", "--method", "rrf", "--out", fused,
                    "--qrels", sample_root / "qrels", "--queries", queries, "-m", "ndcg@10")
    assert result.exit_code == 0, result.output
    run = json.loads(fused.read_text())
    assert {d.split("_")[0] for docs in run.values() for d in docs} >= {"benv2s1", "benv2s2"}
    assert (tmp_path / "fused.results.json").is_file()
    assert_user_error(invoke("fuse", tmp_path / "s1.trec", tmp_path / "s2.trec", "--method", "rfr", "--out", fused), "Did you mean 'rrf'")


def test_caption_index_search_and_describe(sample_root, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from rsretrieve.datasets.fixtures.git10m import generate_git10m

    shards = generate_git10m(tmp_path / "git10m", n_rows=300, shards=2)
    idx = tmp_path / "cap"
    result = invoke("index", "--dataset", "git10m", "--what", "captions", "--data", shards, "--out", idx, "--index-type", "hnsw", "--sq8")
    assert result.exit_code == 0, result.output
    assert "300 captions, HNSW32_SQ8" in result.stdout
    result = invoke("search", "--index", idx, "--text", "snow covered mountains", "-k", 3, "--min-quality", "0.2")
    assert result.exit_code == 0 and "snow" in result.stdout
    # piped (pytest's capture leaves no terminal on any descriptor), the table keeps every
    # column: each hit on one line, lon/lat included
    monkeypatch.delenv("COLUMNS", raising=False)
    piped = invoke("search", "--index", idx, "--text", "snow covered mountains", "-k", 3).stdout
    assert "lon, lat" in piped and len([line for line in piped.splitlines() if re.search(r"git10m_\d+\.png .* -?\d+\.\d{3}, -?\d+\.\d{3}", line)]) == 3, piped
    hits = tmp_path / "hits.jsonl"
    assert invoke("search", "--index", idx, "--text", "forest", "--bbox", "-20,-30,40,60", "--out", hits).exit_code == 0
    rows = [json.loads(line) for line in hits.read_text().splitlines()]
    assert rows and all(-20 <= r["lon"] <= 40 and -30 <= r["lat"] <= 60 for r in rows)
    key = first_key(sample_root, "benv2s2")
    result = invoke("describe", "--index", idx, "--data", sample_root, "--key", key, "-k", 2)
    assert result.exit_code == 0, result.output
    assert_user_error(invoke("search", "--index", idx, "--text", "x", "--bbox", "1,2,3"), "--bbox '1,2,3' must be four numbers")
    assert_user_error(invoke("index", "--what", "captions", "--out", tmp_path / "z"), "--what captions indexes Git-10M")
    assert_user_error(invoke("describe", "--index", sample_root, "--data", sample_root, "--key", key), "manifest.json not found")
    assert_user_error(invoke("describe", "--index", idx, "--data", sample_root, "--key", key, "--model", "random"),
                      r"index .*cap was built with rsretrieve:default; you asked for random:random")


def test_bigearthnet_txt_end_to_end_with_grouped_metrics(tmp_path) -> None:  # noqa: ANN001
    fixture, task, idx = tmp_path / "ben", tmp_path / "task", tmp_path / "idx"
    assert invoke("sample", fixture, "--format", "bigearthnet-txt", "--n-samples", 20).exit_code == 0
    result = invoke("bigearthnet-task", "--parquet", fixture / "BigEarthNet.txt.parquet", "--images", fixture / "lmdb", "--out", task)
    assert result.exit_code == 0 and "caption queries" in result.stdout
    assert invoke("index", "--dataset", "bigearthnet-txt", "--data", task, "--out", idx).exit_code == 0
    result = invoke("eval", "--index", idx, "--group-by", "country,season,climate_zone", "-m", "ndcg@10")
    assert result.exit_code == 0, result.output
    assert "by country (all)" in result.stdout and "by climate_zone (all)" in result.stdout
    report = json.loads((idx.with_name(idx.name + ".results.json")).read_text())
    assert set(report["groups"]) == {"country", "season", "climate_zone"}
    assert_user_error(invoke("bigearthnet-task", "--parquet", fixture / "BigEarthNet.txt.parquet", "--images", tmp_path / "none",
                             "--out", tmp_path / "t2"), "image store .*none not found")


def test_sharded_indexing_from_the_cli(sample_root, tmp_path) -> None:  # noqa: ANN001
    for i in range(2):
        assert _index(sample_root, tmp_path / f"s{i}", "--model", "rsretrieve-tiny", "--shard", f"{i}/2").exit_code == 0
    result = invoke("merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "merged")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "merged" / "manifest.json").read_text())["counts"]["total"] > 0
    # a torch-free model on the local cluster (test_dask_cluster runs torch models on workers)
    result = _index(sample_root, tmp_path / "dask", "--model", "random", "--shards", 2, "--engine", "dask")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dask" / "manifest.json").is_file() and not (tmp_path / "dask.shards").exists()
    again = _index(sample_root, tmp_path / "dask", "--model", "random", "--shards", 2, "--engine", "dask")
    assert again.exit_code == 0 and "reused" in again.output, again.output
    assert_user_error(_index(sample_root, tmp_path / "x", "--shard", "1-2"), "--shard must look like I/N")


def test_show_and_report_commands(index_dir, sample_root, tmp_path) -> None:  # noqa: ANN001
    result = invoke("show", "--index", index_dir, "--text", "flooded fields", "-k", 4, "--out", tmp_path / "g.png", "--false-color")
    assert result.exit_code == 0 and (tmp_path / "g.png").is_file()
    assert_user_error(invoke("show", "--index", index_dir, "--out", tmp_path / "x.png"), "give one query: --text, --query-id")
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: t\ndata: {sample_root}\nmodels: [random]\nmetrics: [ndcg@10]\n")
    assert invoke("leaderboard", suite, "--out", tmp_path / "lb").exit_code == 0
    result = invoke("report", tmp_path / "lb", "--out", tmp_path / "report", "--grids", 1)
    assert result.exit_code == 0 and (tmp_path / "report" / "index.html").is_file()
    assert_user_error(invoke("report", tmp_path, "--out", tmp_path / "r2"), "leaderboard.json not found")


def test_readme_caption_example_works_as_written(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """The Git-10M commands of the README, in a scratch folder (a smaller fixture)."""
    monkeypatch.chdir(tmp_path)
    assert invoke("sample", "data/clm", "--n-samples", 40).exit_code == 0
    assert invoke("sample", "data/git10m", "--format", "git10m", "--n-samples", 300).exit_code == 0
    common = ("index", "--dataset", "git10m", "--what", "captions", "--data", "data/git10m", "--index-type", "hnsw", "--sq8")
    assert invoke(*common, "--out", "runs/captions").exit_code == 0
    assert_user_error(invoke("search", "--index", "runs/captions", "--text", "x", "--sensor", "s1"),
                      "--sensor applies to image indexes; runs/captions is a caption index")
    result = invoke("search", "--index", "runs/captions", "--text", "flooded farmland near a river", "-k", 5,
                    "--min-quality", "0.5", "--max-resolution", "2", "--bbox", "5,43,15,50")
    # 300 captions here (the README's 2,000): none passes all three filters, and search says so
    assert result.exit_code == 0 and "no caption of the index passes the filters" in result.stderr
    result = invoke("search", "--index", "runs/captions", "--text", "flooded farmland near a river", "-k", 5, "--min-quality", "0.5")
    assert result.exit_code == 0 and "approximate index" in result.stderr
    assert invoke("describe", "--index", "runs/captions", "--data", "data/clm", "--key", "benv2s2_000000", "-k", 5).exit_code == 0
    rgb = ("describe", "--dataset", "git10m", "--data", "data/git10m", "--key", "git10m_00000001.png")
    assert_user_error(invoke(*rgb[:1], "--index", "runs/captions", *rgb[1:]),
                      r"image towers take s1, s2 bands, not rgb images. Which encoders describe which images")
    assert invoke(*common, "--out", "runs/captions-clip", "--model", "rsretrieve-tiny-random").exit_code == 0
    result = invoke(*rgb[:1], "--index", "runs/captions-clip", *rgb[1:])
    assert result.exit_code == 0, result.output


def test_search_refuses_options_an_image_index_cannot_honour(index_dir) -> None:  # noqa: ANN001
    result = invoke("search", "--index", index_dir, "--text", "water", "--min-quality", 0.5, "--max-resolution", 2)
    assert_user_error(result, "--min-quality, --max-resolution apply to caption indexes")


def test_renamed_options_keep_working_with_a_note(index_dir, sample_root, tmp_path) -> None:  # noqa: ANN001
    old = invoke("eval", "--index", index_dir, "-k", 50, "-m", "ndcg@10", "--out", tmp_path / "a.json")
    new = invoke("eval", "--index", index_dir, "--depth", 50, "-m", "ndcg@10", "--out", tmp_path / "b.json")
    assert old.exit_code == new.exit_code == 0 and "eval -k is now --depth" in old.stderr
    assert json.loads((tmp_path / "a.json").read_text())["results"] == json.loads((tmp_path / "b.json").read_text())["results"]
    assert_user_error(invoke("eval", "--index", index_dir, "-k", 5, "--depth", 5), "eval -k is the old name of --depth")
    positional = invoke("check", sample_root, "--out", tmp_path / "c.json")
    assert positional.exit_code == 0 and "check DATA (positional) is now --data" in positional.stderr
    assert_user_error(invoke("check", "--out", tmp_path / "d.json"), "missing option --data")
    assert "[OLD_DATA]" not in invoke("check", "--help").stdout.upper()  # the old positional is not advertised
    kind = invoke("index", "--data", sample_root, "--out", tmp_path / "h", "--model", "random", "--index", "hnsw")
    assert kind.exit_code == 0 and "index --index is now --index-type" in kind.stderr
    assert json.loads((tmp_path / "h" / "manifest.json").read_text())["index"]["kind"] == "hnsw"
    for hidden in ("--model", "--pretrained", "--seed"):  # search uses the index's encoder: only checked, not offered
        assert hidden not in invoke("search", "--help").stdout


def test_help_shows_no_value_for_flags_and_every_default() -> None:
    import re

    for command in ("index", "search", "eval", "train", "check", "leaderboard", "show", "describe", "fuse", "demo"):
        text = invoke(command, "--help").stdout
        assert "<bool>" not in text, command
        assert not re.search(r"\s\.\s*$", text, re.M), command  # a default eaten as markup left " ."
    assert "[the shipped default]" in " ".join(invoke("index", "--help").stdout.split())


def test_hnsw_and_ivf_settings_from_the_cli_and_at_search_time(sample_root, index_dir, tmp_path) -> None:  # noqa: ANN001
    hnsw = tmp_path / "hnsw"
    assert _index(sample_root, hnsw, "--model", "random", "--index-type", "hnsw", "--hnsw-m", 8, "--ef-search", 40).exit_code == 0
    settings = json.loads((hnsw / "manifest.json").read_text())["index"]
    assert (settings["hnsw_m"], settings["ef_search"]) == (8, 40)
    assert invoke("search", "--index", hnsw, "--text", "water", "--ef-search", 200).exit_code == 0
    assert_user_error(invoke("search", "--index", hnsw, "--text", "water", "--nprobe", 4),
                      "--nprobe applies to ivf indexes; .* is a hnsw index")
    assert_user_error(invoke("search", "--index", index_dir, "--text", "water", "--ef-search", 64),
                      "--ef-search applies to hnsw indexes; .* is a flat index")
    assert_user_error(invoke("search", "--index", hnsw, "--text", "water", "--ef-search", 0), "--ef-search must be at least 1")


def test_search_shows_as_many_hits_as_k_asks(index_dir) -> None:  # noqa: ANN001
    import re

    for k in (3, 20):
        result = invoke("search", "--index", index_dir, "--text", "water", "-k", k)
        assert result.exit_code == 0, result.output
        assert len(re.findall(r"^│ \d+ ", result.stdout, re.M)) == k


def test_caption_benchmark_cross_sensor_and_image_to_caption_from_the_cli(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    bench = tmp_path / "bench"
    assert invoke("sample", bench, "--format", "rs-captions", "--n-samples", 30).exit_code == 0
    result = invoke("eval", "--dataset", "rs-captions", "--data", bench, "--model", "rsretrieve-tiny", "--protocol", "remoteclip",
                    "--save-run", tmp_path / "runs" / "r.trec")
    assert result.exit_code == 0, result.output
    assert not list(bench.parent.glob("bench*.results.json"))  # nothing written beside the data
    report = json.loads((tmp_path / "results" / "bench.rsretrieve-tiny.remoteclip.results.json").read_text())
    scores = report["results"]["all"]["scores"]
    assert list(scores) == ["t2i_recall@1", "t2i_recall@5", "t2i_recall@10", "i2t_recall@1", "i2t_recall@5",
                            "i2t_recall@10", "mean_recall"]
    assert report["as_reported"]["mean_recall"] == round(scores["mean_recall"] * 100, 2)
    assert "mean_recall" in result.stdout and "protocol remoteclip" in result.stdout
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r.i2t.trec", "r.t2i.trec"]

    ben = tmp_path / "ben"
    assert invoke("sample", ben, "--format", "bigearthnet-txt", "--n-samples", 30).exit_code == 0
    assert invoke("bigearthnet-task", "--parquet", ben / "BigEarthNet.txt.parquet", "--images", ben / "lmdb", "--out", tmp_path / "task").exit_code == 0
    assert invoke("index", "--dataset", "bigearthnet-txt", "--data", tmp_path / "task", "--out", tmp_path / "bidx",
                  "--model", "rsretrieve-tiny").exit_code == 0
    assert invoke("eval", "--index", tmp_path / "bidx", "--task", "cross-sensor").exit_code == 0
    cross = json.loads((tmp_path / "bidx.cross-sensor.results.json").read_text())
    assert set(cross["results"]) == {"s1->s2", "s2->s1"}
    assert cross["results"]["s1->s2"]["n_queries"] == cross["source"]["counts"]["pairs"] > 0
    assert_user_error(invoke("eval", "--index", tmp_path / "bidx", "--task", "cross-sensor", "--model", "rsretrieve-tiny"),
                      "--model cannot be used with the cross-sensor evaluation")

    g10 = tmp_path / "g10"
    assert invoke("sample", g10, "--format", "git10m", "--n-samples", 40).exit_code == 0
    assert invoke("index", "--what", "captions", "--dataset", "git10m", "--data", g10, "--out", tmp_path / "cap",
                  "--model", "rsretrieve-tiny", "--index-type", "flat").exit_code == 0
    assert invoke("eval", "--index", tmp_path / "cap", "--limit", 25).exit_code == 0
    i2t = json.loads((tmp_path / "cap.image-to-caption.results.json").read_text())
    assert i2t["results"]["all"]["n_queries"] == 25 and "i2t_mrr@100" in i2t["results"]["all"]["scores"]


def test_paired_evaluation_refuses_options_it_cannot_honour(index_dir, tmp_path) -> None:  # noqa: ANN001
    bench = tmp_path / "bench"
    assert invoke("sample", bench, "--format", "rs-captions", "--n-samples", 15).exit_code == 0
    caption = ("eval", "--dataset", "rs-captions", "--data", bench, "--model", "rsretrieve-tiny")
    assert_user_error(invoke(*caption, "--qrels", tmp_path), "--qrels cannot be used with the caption-benchmark evaluation")
    assert_user_error(invoke(*caption, "--limit", 3), "--limit cannot be used with the caption-benchmark evaluation")
    assert_user_error(invoke(*caption, "--protocol", "skyscrip"), "Did you mean 'skyscript'")
    assert_user_error(invoke("eval", "--dataset", "rs-captions", "--model", "rsretrieve-tiny"), "needs --data")
    assert_user_error(invoke("eval", "--index", index_dir, "--protocol", "remoteclip"), "--protocol belongs to paired evaluations")
    assert_user_error(invoke("eval", "--index", index_dir, "--task", "cross-sensor"), "needs an index of a BigEarthNet.txt task")
    assert_user_error(invoke("eval", "--index", index_dir, "--task", "crossensor"), "Did you mean 'cross-sensor'")
    assert not list(tmp_path.glob("*.results.json"))


def test_options_an_index_run_cannot_honour_are_refused_before_any_work(sample_root, tmp_path) -> None:  # noqa: ANN001
    import torch

    out = tmp_path / "idx"
    both = invoke("index", "--data", sample_root, "--model", "random", "--out", out, "--shard", "0/2", "--shards", "2")
    assert_user_error(both, r"--shard 0/2 indexes one shard .* --shards 2 runs every shard .*give one of the two")
    for engine in ("local", "dask"):
        many = invoke("index", "--data", sample_root, "--model", "random", "--out", out, "--shards", "8", "--limit", "5",
                      "--engine", engine)
        assert_user_error(many, r"--shards 8 is more than the 5 samples selected \(--limit 5\): every shard needs at least one")
    assert not out.exists() and not Path(f"{out}.shards").exists()
    random = invoke("index", "--data", sample_root, "--model", "random", "--out", out, "--device", "cpu", "--limit", "4")
    assert_user_error(random, r"--device cpu: random:random runs without torch, on no device; omit --device")
    if not torch.cuda.is_available():
        cuda = invoke("index", "--data", sample_root, "--model", "rsretrieve-tiny", "--out", out, "--device", "cuda", "--limit", "4")
        assert_user_error(cuda, r"--device cuda: torch sees no CUDA device on this machine")
    bad = invoke("index", "--data", sample_root, "--model", "rsretrieve-tiny", "--out", out, "--device", "gpu0", "--limit", "4")
    assert_user_error(bad, r"--device 'gpu0' is not a torch device")
    assert not out.exists()


def test_weights_paths_are_stored_resolved(sample_root, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """`--pretrained ../ckpt/x.safetensors` typed in one folder; `search` run from another."""
    import json

    from safetensors.torch import save_file

    from rsretrieve.encoders import load_encoder
    from tests.conftest import TINY

    (tmp_path / "ckpt").mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    state = {k: v.detach().clone().contiguous() for k, v in load_encoder(TINY).model.state_dict().items()}
    save_file(state, str(tmp_path / "ckpt" / "x.safetensors"))
    monkeypatch.chdir(tmp_path / "work")
    built = invoke("index", "--data", sample_root, "--model", "rsretrieve-tiny", "--pretrained", "../ckpt/x.safetensors",
                   "--limit", "4", "--out", "idx")
    assert built.exit_code == 0, built.output
    stored = json.loads((tmp_path / "work" / "idx" / "manifest.json").read_text())["encoder"]["pretrained"]
    assert stored == str(tmp_path / "ckpt" / "x.safetensors")
    monkeypatch.chdir(tmp_path / "elsewhere")
    found = invoke("search", "--index", tmp_path / "work" / "idx", "--text", "water")
    assert found.exit_code == 0, found.output
    refused = invoke("index", "--data", sample_root, "--model", "random", "--pretrained", "w.pt", "--out", "x")
    assert_user_error(refused, r"--pretrained cannot be used with --model random")


def test_natural_mistakes_get_help(index_dir, sample_root, tmp_path) -> None:  # noqa: ANN001
    """Metric names in any case; a results file given as a run; a non-qrels JSON in a qrels
    folder; a misspelt --like key or --query-id."""
    import json

    from rsretrieve.index import load_index

    scored = invoke("eval", "--index", index_dir, "-m", "nDCG@10,MAP@100", "--out", tmp_path / "r.json")
    assert scored.exit_code == 0, scored.output
    assert set(json.loads((tmp_path / "r.json").read_text())["results"]["all"]["scores"]) == {"ndcg@10", "map@100"}
    wrong_run = invoke("eval", "--run", tmp_path / "r.json", "--qrels", sample_root / "qrels", "--queries", sample_root / "queries.jsonl")
    assert_user_error(wrong_run, r"r.json is an rsretrieve results file \(scores per metric, not a ranked list\)")
    qrels = tmp_path / "qrels"
    qrels.mkdir()
    (qrels / "test.tsv").write_text((sample_root / "qrels" / "test.tsv").read_text())
    (qrels / "notes.json").write_text(json.dumps({"author": "me", "version": 2}))
    foreign = invoke("eval", "--index", index_dir, "--qrels", qrels)
    assert_user_error(foreign, r"notes.json is not a qrels file \(query 'author': expected \{doc id: relevance\}, got a str")
    key = load_index(index_dir).keys[0]
    like = invoke("search", "--index", index_dir, "--like", key[:-1] + "9x")
    assert_user_error(like, r"--like: key '.*' is not in index .*Did you mean '")
    show = invoke("show", "--index", index_dir, "--query-id", "q-watr", "--out", tmp_path / "g.png")
    assert_user_error(show, r"query id 'q-watr' is not in .*Did you mean 'q-water'")
