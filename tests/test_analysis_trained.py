"""Model analyses on a sweep's trained models: tiny models written into a real sqlite MLflow store
(the layout tracking writes: parent run, trial child runs with params, metrics and the artifacts
config.yaml, rf_params.csv, model.pt), read back with `query.runs` and `load_trial_model`."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from v1sweep.config import trial as cfg
from v1sweep.results import query as query
from v1sweep.analysis import AnalysisError, get_analysis
from v1sweep.analysis.trained import analyze_sweep_models, load_trial_model, select_models

BASE = {"data": {"dataset": "synthetic", "image_size": 32, "train_size": 20, "test_size": 24, "seed": 0},
        "frontend": {"n_simple": 6, "n_complex": 6, "ksize": 9, "visual_degrees": 2.0, "sf_max": 8.0},
        "model": {"backbone": "tiny", "bottleneck": 8}}
CORRUPTIONS = ("gaussian_noise", "contrast")
LAYERS = ["vone", "bottleneck", "layer1", "layer2", "layer3", "layer4", "logits"]


def _config(strategy: str, seed: int, **flat) -> cfg.TrialConfig:
    return cfg.replace(cfg.from_dict(BASE), **{"rf.strategy": strategy, "train.seed": seed, "rf.seed": seed,
                                               "name": f"{strategy}-{seed}", **flat})


def _build(config: cfg.TrialConfig):
    from v1sweep.trial.models import build_model
    from v1sweep.trial.run import sample_rf

    rf = sample_rf(config)
    torch.manual_seed(config.train.seed)
    model = build_model(config, rf, 10)
    with torch.no_grad():  # make the BatchNorm statistics non-trivial, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval(), rf


def _log_trial(client, exp, parent, sweep, tmp, config, model, rf, *, with_model=True):
    from mlflow.entities import Metric, Param

    from v1sweep.trial.run import empty_rf

    tags = {"mlflow.parentRunId": parent, "v1sweep.role": "trial", "v1sweep.sweep": sweep,
            "trial_id": config.name, "v1sweep.status": "finished"}
    run = client.create_run(exp, run_name=config.name, tags=tags).info.run_id
    client.log_batch(run, params=[Param(k, str(v)) for k, v in cfg.to_flat(config).items()],
                     metrics=[Metric("clean_acc", 0.5, 0, 0), Metric("corruption_acc", 0.4, 0, 0)])
    folder = tmp / run
    folder.mkdir()
    (folder / "config.yaml").write_text(cfg.to_yaml(config))
    (rf if rf is not None else empty_rf()).to_csv(folder / "rf_params.csv")
    names = ["config.yaml", "rf_params.csv"]
    if with_model:
        torch.save(model.state_dict(), folder / "model.pt")
        names.append("model.pt")
    for name in names:
        client.log_artifact(run, str(folder / name))
    client.set_terminated(run, "FINISHED")
    return run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Sweeps: 'tiny' (biological + unif1 x seeds 0, 1, and a plain baseline), 'nomodel' (a noisy
    biological model and a unif1 run without model.pt), 'plain' (baselines only), 'nodata' (a
    model whose dataset folder is missing)."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("trainedstore")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    originals: dict[str, tuple] = {}

    def parent(name):
        exp = client.create_experiment(name, artifact_location=(root / "artifacts" / name).as_uri())
        pid = client.create_run(exp, run_name=name, tags={"v1sweep.role": "sweep", "v1sweep.sweep": name}).info.run_id
        return exp, pid

    def add(sweep, exp, pid, config, with_model=True):
        model, rf = _build(config) if config.frontend.enabled else (None, None)
        if model is None:
            from v1sweep.trial.models import build_model

            torch.manual_seed(0)
            model = build_model(config, None, 10).eval()
        run = _log_trial(client, exp, pid, sweep, root, config, model, rf, with_model=with_model)
        originals[run] = (model, config, rf)
        return run

    exp, pid = parent("tiny")
    for seed in (0, 1):
        for strategy in ("unif1", "biological"):  # logged out of order on purpose
            add("tiny", exp, pid, _config(strategy, seed))
    add("tiny", exp, pid, _config("biological", 7, **{"frontend.enabled": False, "name": "plain-7"}))
    exp, pid = parent("nomodel")
    add("nomodel", exp, pid, _config("biological", 0, **{"frontend.noise": "gaussian"}))
    add("nomodel", exp, pid, _config("unif1", 0), with_model=False)
    exp, pid = parent("plain")
    add("plain", exp, pid, _config("biological", 0, **{"frontend.enabled": False}))
    exp, pid = parent("nodata")  # trained on a folder this machine does not have
    add("nodata", exp, pid, _config("biological", 0, **{"data.dataset": "imagefolder",
                                                         "data.path": str(root / "no-such-dataset")}))
    return {"uri": uri, "originals": originals, "root": root}


def _runs(store, sweep):
    return query.runs(sweep, tracking_uri=store["uri"])


def _linear_cka_reference(x: torch.Tensor, y: torch.Tensor) -> float:
    """HSIC form: tr(K H L H) / sqrt(tr(K H K H) tr(L H L H)), K = X X^T, L = Y Y^T."""
    x, y = x.double().reshape(len(x), -1), y.double().reshape(len(y), -1)
    n = len(x)
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l = x @ x.T, y @ y.T
    hsic = lambda a, b: torch.trace(a @ h @ b @ h)  # noqa: E731
    return float(hsic(k, l) / torch.sqrt(hsic(k, k) * hsic(l, l)))


def _logits(model, images_uint8):
    with torch.no_grad():
        return model((images_uint8.float() / 255 - 0.5) / 0.5)


# ----------------------------------------------------------------------------- loading
def test_load_trial_model_round_trips_weights_config_and_rf(store):
    runs = _runs(store, "tiny")
    assert len(runs) == 5
    x = torch.randn(3, 3, 32, 32)
    for run_id in runs["run_id"]:
        model, config, rf = store["originals"][run_id]
        rng = torch.get_rng_state()
        loaded, lconfig, lrf = load_trial_model(run_id, tracking_uri=store["uri"])
        assert torch.equal(torch.get_rng_state(), rng)  # rebuilding did not consume the global RNG
        assert lconfig == config
        assert (lrf is None and rf is None) or lrf == rf
        assert not loaded.training
        state, lstate = model.state_dict(), loaded.state_dict()
        assert state.keys() == lstate.keys() and all(torch.equal(state[k], lstate[k]) for k in state)
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))


def test_loaded_noisy_model_has_its_noise_frozen(store):
    from v1sweep.trial.evaluation import NOISE_SEED

    runs = _runs(store, "nomodel")
    run_id = runs.loc[runs["params.rf.strategy"] == "biological", "run_id"].item()
    model, _, _ = store["originals"][run_id]
    loaded, config, _ = load_trial_model(run_id, tracking_uri=store["uri"])
    assert config.frontend.noise == "gaussian" and loaded.vone.noise_frozen
    x = torch.randn(4, 3, 32, 32)
    model.vone.freeze_noise(NOISE_SEED)
    with torch.no_grad():
        a, b, ref = loaded(x), loaded(x), model(x)
    model.vone.unfreeze_noise()
    assert torch.equal(a, b) and torch.equal(a, ref)


def test_missing_model_pt_is_a_clear_error(store):
    runs = _runs(store, "nomodel")
    run_id = runs.loc[runs["params.rf.strategy"] == "unif1", "run_id"].item()
    with pytest.raises(AnalysisError, match=rf"run {run_id} \(trial unif1-0\): missing artifact\(s\) model\.pt"):
        load_trial_model(run_id, tracking_uri=store["uri"])
    with pytest.raises(AnalysisError, match="no run 'nope'"):
        load_trial_model("nope", tracking_uri=store["uri"])


# ----------------------------------------------------------------------------- choosing models
def test_select_models_pairs_seeds_and_covers_every_variant():
    rows = [("biological", s) for s in (0, 1, 2)] + [("unif1", s) for s in (1, 2)] + [("unif2", 5)]
    frame = pd.DataFrame({"run_id": [f"r{i}" for i in range(len(rows))], "status": "finished",
                          "params.rf.strategy": [v for v, _ in rows], "params.train.seed": [s for _, s in rows],
                          "params.rf.seed": [s for _, s in rows]})
    chosen, notes = select_models(frame, max_models=4)
    picked = set(zip(chosen["variant"], chosen["train_seed"]))
    # every variant once, then the seed pair shared by the most variants (1 and 2 tie: the lower)
    assert picked == {("biological", 1), ("unif1", 1), ("unif2", 5), ("biological", 2)} or \
        picked == {("biological", 1), ("unif1", 1), ("unif2", 5), ("unif1", 2)}
    assert any("max_models=4" in n for n in notes)
    everything, _ = select_models(frame, max_models=10)
    assert len(everything) == len(frame)
    failed = frame.assign(status=["failed"] + ["finished"] * (len(frame) - 1))
    assert ("biological", 0) not in set(zip(*select_models(failed)[0][["variant", "train_seed"]].T.values))


# ----------------------------------------------------------------------------- the analyses
@pytest.fixture(scope="module")
def analysis(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained_out")
    runs = query.runs("tiny", tracking_uri=store["uri"])
    return analyze_sweep_models(runs, tracking_uri=store["uri"], out_dir=out, corruption_names=CORRUPTIONS,
                                max_models=8), runs


def test_analysis_writes_tables_figures_and_markdown(analysis):
    result, _ = analysis
    assert set(result["tables"]) == {"models", "electrophysiology_units", "electrophysiology_scores",
                                     "electrophysiology_summary", "cka", "cka_summary", "cka_baselines", "subpopulations",
                                     "subpopulations_summary"}
    for path in result["tables"].values():
        assert len(pd.read_csv(path)) > 0
    assert set(result["figures"]) == {"electrophysiology", "cka", "subpopulations"}
    for path in result["figures"].values():
        img = np.asarray(Image.open(path).convert("L"), dtype=float)
        assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 5  # a drawn figure, not blank
    md = result["markdown"]
    assert md.startswith("## Trained models") and md == result["markdown_path"].read_text()
    assert "biological x2" in md and "unif1 x2" in md
    assert "plain-baseline trial(s)" in md  # the baseline run is left out with a note
    for title in ("in-silico electrophysiology", "representational similarity (CKA)", "sub-populations"):
        assert title in md
    assert [s["title"].split(": ")[1].split(" ")[0] for s in result["sections"]] == \
        ["in-silico", "representational", "sub-populations"]
    assert set(result["timings"]) >= {"load_s", "electrophysiology_s", "cka_s", "subpopulations_s", "total_s"}


def test_electrophysiology_scores_are_the_per_variant_means(store, analysis):
    from v1sweep.analysis.neurophysiology import electrophysiology
    from v1sweep.analysis.v1_benchmarks import list_benchmarks

    result, runs = analysis
    summary = pd.read_csv(result["tables"]["electrophysiology_summary"])
    assert set(zip(summary["variant"], summary["benchmark"])) == \
        {(v, b) for v in ("biological", "unif1") for b in list_benchmarks()}
    assert (summary["n_models"] == 2).all()
    units = pd.read_csv(result["tables"]["electrophysiology_units"])
    assert len(units) == 4 * 12
    scores = pd.read_csv(result["tables"]["electrophysiology_scores"])
    assert len(scores) == 4 * len(list_benchmarks()) and scores["run_id"].nunique() == 4
    v1 = runs[runs["params.frontend.enabled"]]
    for variant in ("biological", "unif1"):
        # one model per variant measured directly (the quick protocol: the largest aperture only)
        run_id = v1.loc[v1["params.rf.strategy"] == variant, "run_id"].iloc[0]
        res = electrophysiology(store["originals"][run_id][0], image_size=32, visual_degrees=2.0, layer="vone",
                                radii=(1.0,))
        got = scores[scores["run_id"] == run_id].set_index("benchmark")["score"]
        pd.testing.assert_series_equal(got.dropna().sort_index(), res.scores.set_index("benchmark")["score"]
                                       .dropna().sort_index(), check_names=False, rtol=1e-9)
        # the summary is the mean over the variant's models
        expected = scores[scores["variant"] == variant].groupby("benchmark")["score"].mean()
        mean = summary[summary["variant"] == variant].set_index("benchmark")["score"]
        pd.testing.assert_series_equal(mean.dropna().sort_index(), expected.dropna().sort_index(),
                                       check_names=False, rtol=1e-12)
        assert mean.dropna().size == 7  # the De Valois / Schiller benchmarks are scored


def test_cka_pairs_each_variant_with_the_biological_model_of_the_same_seeds(store, analysis):
    from v1sweep.data import load_dataset

    result, runs = analysis
    cka = pd.read_csv(result["tables"]["cka"])
    probes = ["clean", "gaussian_noise/3", "contrast/3", "all"]
    assert set(cka["variant"]) == {"unif1"} and set(cka["pairing"]) == {"seeds"}
    assert sorted(set(zip(cka["train_seed"], cka["layer"], cka["probe"]))) == \
        sorted((s, layer, p) for s in (0, 1) for layer in LAYERS for p in probes)
    assert len(cka) == 2 * len(LAYERS) * len(probes)
    assert cka.loc[cka["probe"] != "all", "n_images"].eq(24).all()  # the whole 24-image test set
    assert cka["cka"].between(0, 1 + 1e-9).all()
    images = load_dataset(cfg.from_dict(BASE).data).test_images
    by_seed = {}
    for run_id, strategy, seed, enabled in runs[["run_id", "params.rf.strategy", "params.train.seed",
                                                 "params.frontend.enabled"]].itertuples(index=False):
        if enabled:
            by_seed[(strategy, seed)] = store["originals"][run_id][0]
    for seed in (0, 1):
        row = cka[(cka["train_seed"] == seed) & (cka["layer"] == "logits") & (cka["probe"] == "clean")]
        same = _linear_cka_reference(_logits(by_seed[("unif1", seed)], images),
                                     _logits(by_seed[("biological", seed)], images))
        other = _linear_cka_reference(_logits(by_seed[("unif1", seed)], images),
                                      _logits(by_seed[("biological", 1 - seed)], images))
        assert row["cka"].item() == pytest.approx(same, rel=1e-6)
        assert abs(same - other) > 1e-4  # so the pairing is really by seeds
    summary = pd.read_csv(result["tables"]["cka_summary"])
    assert (summary["n_pairs"] == 2).all() and len(summary) == len(LAYERS) * len(probes)


def test_subpopulations_cover_every_variant_grouping_and_group(store, analysis):
    from v1sweep.analysis.subpopulations import group_units

    result, runs = analysis
    full = pd.read_csv(result["tables"]["subpopulations"])
    summary = pd.read_csv(result["tables"]["subpopulations_summary"])
    rfs = {(s, seed): store["originals"][r][2] for r, s, seed in
           runs[["run_id", "params.rf.strategy", "params.train.seed"]].itertuples(index=False)
           if store["originals"][r][2] is not None}
    edges = tuple(np.quantile(np.concatenate([rf.sf for rf in rfs.values()]), [1 / 3, 2 / 3]))
    expected = set()
    counts: dict[tuple, list[int]] = {}
    for (strategy, seed), rf in rfs.items():
        for by in ("sf", "orientation", "cell_type"):
            labels = group_units(rf, by, sf_edges=edges)
            for g in set(labels):
                expected.add((strategy, seed, by, g))
                counts.setdefault((strategy, by, g), []).append(int((labels == g).sum()))
    assert set(zip(full["variant"], full["train_seed"], full["grouping"], full["group"])) == expected
    assert set(zip(summary["variant"], summary["grouping"], summary["group"])) == {k for k in counts}
    for row in summary.itertuples(index=False):
        n = counts[(row.variant, row.grouping, row.group)]
        assert row.n_seed_pairs == len(n) and row.n_units == pytest.approx(np.mean(n))
    assert {"delta_clean_acc", "rel_delta_corruption_acc", "weight_gram_similarity_vs_ref"} <= set(full.columns)
    ref_rows = full[full["variant"] == "biological"]
    assert np.allclose(ref_rows["weight_gram_similarity_vs_ref"], 1.0)  # the reference against itself
    assert full["reference"].eq("biological").all()


# ----------------------------------------------------------------------------- graceful skips
def test_missing_model_and_single_variant_are_notes_not_errors(store, tmp_path):
    runs = _runs(store, "nomodel")
    missing = runs.loc[runs["params.rf.strategy"] == "unif1", "run_id"].item()
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)
    result = analyze_sweep_models(runs, tracking_uri=store["uri"], out_dir=tmp_path, probe_images=images,
                                  corruption_names=("contrast",))
    md = result["markdown"]
    assert f"run {missing} (trial unif1-0): missing artifact(s) model.pt" in md
    assert "only one variant (biological): no pairs of variants, CKA skipped" in md
    assert "without labels, so the ablation" in md
    assert "cka" not in result["tables"] and set(result["figures"]) == {"electrophysiology", "subpopulations"}
    assert list(result["models"]["variant"]) == ["biological"]
    sub = pd.read_csv(result["tables"]["subpopulations"])
    assert "delta_clean_acc" not in sub.columns and len(sub) > 0


def test_sweeps_without_v1_models_give_a_note(store, tmp_path):
    result = analyze_sweep_models(_runs(store, "plain"), tracking_uri=store["uri"], out_dir=tmp_path / "a")
    assert result["tables"] == {} and result["figures"] == {} and result["sections"] == []
    assert "plain-baseline" in result["markdown"] and "model analyses were skipped" in result["markdown"]
    empty = analyze_sweep_models(_runs(store, "plain").iloc[:0], tracking_uri=store["uri"], out_dir=tmp_path / "b")
    assert "no finished trials" in empty["markdown"] and empty["tables"] == {}
    with pytest.raises(ValueError, match="corruption_names"):
        analyze_sweep_models(_runs(store, "plain"), out_dir=tmp_path / "c", corruption_names=("rain",))


def test_unloadable_probe_data_leaves_the_image_free_analysis(store, tmp_path):
    result = analyze_sweep_models(_runs(store, "nodata"), tracking_uri=store["uri"], out_dir=tmp_path)
    assert "no probe images: the sweep's test data cannot be loaded here" in result["markdown"]
    assert set(result["figures"]) == {"electrophysiology"}
    assert len(pd.read_csv(result["tables"]["electrophysiology_units"])) == 12


def test_registry_points_to_callables():
    from v1sweep.analysis import cka, neurophysiology, subpopulations, trained

    assert get_analysis("neurophysiology") is neurophysiology.electrophysiology
    assert get_analysis("cka") is cka.layer_cka
    assert get_analysis("subpopulations") is subpopulations.compare_variants
    assert get_analysis("trained") is trained.analyze_sweep_models


def test_mixed_corruption_takes_image_i_from_probe_i_mod_k():
    from v1sweep.analysis.trained import mixed_corruption

    probes = {name: torch.full((7, 3, 4, 4), float(k)) for k, name in enumerate(("a/3", "b/3", "c/3"))}
    mixed = mixed_corruption(probes)
    assert [int(mixed[i, 0, 0, 0]) for i in range(7)] == [i % 3 for i in range(7)]
    assert int(probes["a/3"].sum()) == 0  # the inputs are left alone
