"""Multirun sweeps and their report: grids, failures, launchers, DDP (the search: test_search.py)."""

import csv
import json
import statistics

import pytest
from runs import in_process, metrics_of, run_train, train_here
from scipy import stats

from mnist_cnn.cli.commands import report as main
from mnist_cnn.reports.intervals import estimate, seeds_to_separate
from mnist_cnn.reports.sweep import read_jobs, write_report

TINY = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=1",
    "callbacks.progress_bar.refresh_rate=0",
    "logger=csv",
    "explain=false",
)


def job_metrics(job_dir):
    return metrics_of(job_dir)


@pytest.mark.slow
def test_an_epochs_grid_read_from_one_run_equals_separate_runs(tmp_path, mnist_dir):
    """read_epochs against one run per length, figure for figure. The checkpoint callback picks the
    *lowest* validation accuracy here, so that later readings must test an earlier epoch's weights."""
    common = (
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "callbacks.progress_bar.refresh_rate=0",
        "logger=csv",
        "callbacks.checkpoint.mode=min",
        "seed=0",
        "explain=false",
    )
    read = train_here(
        "-m", "read_epochs=[1,3]", "trainer.max_epochs=3", *common, f"hydra.sweep.dir={tmp_path / 'read'}"
    )
    assert read.returncode == 0, read.stderr[-3000:]
    separate = train_here("-m", "trainer.max_epochs=1,3", *common, f"hydra.sweep.dir={tmp_path / 'separate'}")
    assert separate.returncode == 0, separate.stderr[-3000:]

    readings = job_metrics(tmp_path / "read" / "0")["read_at_epochs"]
    figures = ["epochs", "best_epoch", "best_val_acc", "best_val_loss", "test_acc", "test_loss"]
    for job, k in enumerate((1, 3)):
        assert readings[str(k)] == {f: job_metrics(tmp_path / "separate" / str(job))[f] for f in figures}
    assert readings["3"]["best_epoch"] < 3  # an earlier epoch's weights, kept and tested

    rows = summary_rows(tmp_path / "read")  # the report: a trainer.max_epochs=k row per reading, said so
    assert [(r["job"], r["read_from"]) for r in rows] == [
        ("0@1", "job 0, epoch 1 of 3"),
        ("0@3", "job 0, epoch 3 of 3"),
    ]
    assert [r["overrides"].split()[-1] for r in rows] == ["trainer.max_epochs=1", "trainer.max_epochs=3"]
    assert not any("read_epochs" in r["overrides"] for r in rows)
    assert [float(r["test_acc"]) for r in rows] == [readings["1"]["test_acc"], readings["3"]["test_acc"]]
    assert (
        "were not run separately; each was read from one 3-epoch run" in (tmp_path / "read" / "summary.md").read_text()
    )


def summary_rows(sweep_dir):
    return list(csv.DictReader((sweep_dir / "summary.csv").open()))


@pytest.mark.slow
def test_grid_report_has_a_row_per_job_and_mean_std_per_configuration(tmp_path, mnist_dir):
    result = train_here("-m", "data.batch_size=32,64", "seed=0,1", *TINY, f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = summary_rows(tmp_path)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert {r["overrides"].split()[0] for r in rows} == {"data.batch_size=32", "data.batch_size=64"}
    summary = (tmp_path / "summary.md").read_text()
    for batch in (32, 64):
        accs = [
            metrics_of(tmp_path / str(j))["best_val_acc"]
            for j in range(4)
            if f"data.batch_size={batch} " in rows[j]["overrides"] + " "
        ]
        assert len(accs) == 2
        line = next(line for line in summary.splitlines() if line.startswith(f"| data.batch_size={batch}"))
        low, high = stats.t.interval(0.95, len(accs) - 1, loc=statistics.fmean(accs), scale=stats.sem(accs))
        assert f"| 2 | {statistics.fmean(accs):.4f} ± {(high - low) / 2:.4f} |" in line
    assert summary.count("★") == 2  # once in the table, once in the legend
    assert "95% interval (Welch)" in summary
    assert (tmp_path / "sweep_data.batch_size.png").stat().st_size > 0
    assert "Sweep report:" in result.stdout


@pytest.mark.slow
def test_a_failing_job_is_reported_and_the_others_still_run(tmp_path, mnist_dir):
    result = train_here("-m", "data.validation_split=1.5,0.3", *TINY, f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 1
    assert "1 of 2 jobs failed" in result.stderr
    failed, ok = summary_rows(tmp_path)
    assert failed["status"] == "failed" and "data.validation_split=1.5 is not allowed" in failed["reason"]
    assert ok["status"] == "ok" and float(ok["best_val_acc"]) > 0
    assert "## Failed jobs" in (tmp_path / "summary.md").read_text()


def write_job(directory, overrides, **metrics):
    directory.mkdir(parents=True)
    (directory / "metrics.json").write_text(json.dumps({"status": "ok", "overrides": overrides, **metrics}))


def fake_sweep(tmp_path, accs):
    """A multirun directory as a cluster would leave it: only metrics.json files (and a killed job)."""
    job = 0
    for batch, values in accs.items():
        for seed, acc in enumerate(values):
            write_job(
                tmp_path / str(job),
                [f"data.batch_size={batch}", f"seed={seed}"],
                best_val_acc=acc,
                test_acc=acc - 0.001,
                best_val_loss=0.1,
                test_loss=0.1,
                epochs=1,
                fit_seconds=10.0,
                train_samples_per_second=1000.0,
            )
            job += 1
    (tmp_path / str(job) / ".hydra").mkdir(parents=True)
    (tmp_path / str(job) / ".hydra" / "overrides.yaml").write_text("- data.batch_size=16\n- seed=0\n")


def welch_interval(a, b):
    """The 95% interval of mean(a) - mean(b), as scipy computes it (an independent path)."""
    return stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)


def test_report_says_when_the_lead_is_within_noise(tmp_path):
    accs = {32: [0.980, 0.990, 0.985], 64: [0.984, 0.982, 0.983]}
    fake_sweep(tmp_path, accs)
    rows = write_report(tmp_path)
    assert [r["status"] for r in rows] == ["ok"] * 6 + ["failed"]
    assert "killed" in rows[-1]["reason"] and rows[-1]["overrides"] == "data.batch_size=16 seed=0"
    summary = (tmp_path / "summary.md").read_text()
    low, high = welch_interval(accs[32], accs[64])
    assert "**data.batch_size=32**" in summary
    assert f"| data.batch_size=64 | +0.0020 | [{low:+.4f}, {high:+.4f}] | no | about " in summary
    assert "Not distinguishable from the best with 3 seeds: data.batch_size=64" in summary
    csv_row = next(r for r in summary_rows(tmp_path) if r["overrides"] == "data.batch_size=64 seed=0")
    assert csv_row["distinguishable_from_best"] == "False"
    assert float(csv_row["best_minus_this_ci95_low"]) == pytest.approx(low)


def test_report_says_when_the_lead_exceeds_noise(tmp_path):
    accs = {32: [0.990, 0.991, 0.992], 64: [0.980, 0.981, 0.982]}
    fake_sweep(tmp_path, accs)
    write_report(tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    low, high = welch_interval(accs[32], accs[64])
    assert f"| data.batch_size=64 | +0.0100 | [{low:+.4f}, {high:+.4f}] | yes |  |" in summary
    assert "distinguishable from every other configuration" in summary


def test_seeds_to_tell_apart_is_the_fewest_at_which_welch_separates_them():
    a, b = estimate([0.980, 0.990, 0.985]), estimate([0.984, 0.982, 0.983])
    n = seeds_to_separate(a, b)

    def p_value(seeds):
        return stats.ttest_ind_from_stats(a.mean, a.sd, seeds, b.mean, b.sd, seeds, equal_var=False).pvalue

    assert p_value(n) < 0.05 <= p_value(n - 1)
    assert seeds_to_separate(a, estimate([0.985, 0.985, 0.985 + 1e-12])) is None  # no real difference: past 1000


def test_interrupted_jobs_are_reported_apart_from_failed_ones(tmp_path):
    fake_sweep(tmp_path, {32: [0.99, 0.98], 64: [0.97, 0.96]})
    (tmp_path / "5").mkdir()
    (tmp_path / "5" / "metrics.json").write_text(
        json.dumps(
            {
                "status": "interrupted",
                "signal": "SIGTERM",
                "step": 37,
                "epoch": 1,
                "overrides": ["data.batch_size=128"],
                "resume_command": "mnist-train data.batch_size=128 resume=outputs/multirun/x/5",
            }
        )
    )
    rows = write_report(tmp_path)
    assert [r["status"] for r in rows][-2:] == ["failed", "interrupted"]
    summary = (tmp_path / "summary.md").read_text()
    assert "6 jobs: 4 ok, 1 failed, 1 interrupted." in summary
    interrupted = summary.split("## Interrupted jobs")[1]
    assert (
        "job 5 (data.batch_size=128): SIGTERM at step 37; resume: mnist-train data.batch_size=128 resume="
        in interrupted
    )
    assert "job 5" not in summary.split("## Failed jobs")[1].split("## Interrupted")[0]


def test_report_from_the_command_line(tmp_path):
    fake_sweep(tmp_path, {32: [0.99, 0.98], 64: [0.97, 0.96]})
    result = in_process(main, str(tmp_path))
    assert result.returncode == 1  # the killed job counts as a failure
    assert "# Sweep summary" in result.stdout and len(read_jobs(tmp_path)) == 5
    missing = in_process(main, str(tmp_path / "nope"))
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1
    assert missing.stderr.startswith(
        f"mnist-report: error: {tmp_path / 'nope'}: no such directory (see mnist-report --help)"
    )
    helped = in_process(main, "--help")
    assert helped.returncode == 0 and "multirun directory" in helped.stdout


def test_report_on_single_runs_writes_their_summary_and_names_a_damaged_metrics_file(tmp_path, capsys):
    runs = tmp_path / "runs"
    for name, acc in (("a", 0.98), ("b", 0.99)):
        write_job(
            runs / name,
            [f"seed={name}"],
            model="BaselineCNN",
            best_val_acc=acc,
            test_acc=acc - 0.001,
            epochs=3,
            fit_seconds=12.0,
        )
    (runs / "c").mkdir()
    (runs / "c" / "metrics.json").write_text('{"status": "ok", "test_acc": 0.9')  # cut off
    main([str(runs / name) for name in "abc"])
    out, err = capsys.readouterr()
    assert out.startswith("# Runs summary\n") and "3 runs: 2 ok, 1 failed, 0 interrupted" in out
    assert out.strip().endswith(f"Written: {runs / 'summary.md'}, {runs / 'summary.csv'}")
    rows = list(csv.DictReader((runs / "summary.csv").open()))
    assert [(r["job"], r["status"], r["best_val_acc"]) for r in rows] == [
        (str(runs / "a"), "ok", "0.98"),
        (str(runs / "b"), "ok", "0.99"),
        (str(runs / "c"), "failed", ""),
    ]
    assert "metrics.json damaged" in rows[2]["reason"]
    assert (
        err.strip() == f"mnist-report: skipped {runs / 'c' / 'metrics.json'}: damaged "
        "(Expecting ',' delimiter: line 1 column 33 (char 32))"
    )


def test_single_runs_compare_the_settings_that_differ_and_leave_out_limits_names_and_places(tmp_path, capsys):
    for name, (model, acc) in {"a": ("baseline", 0.98), "b": ("baseline", 0.981), "c": ("elu", 0.99)}.items():
        write_job(
            tmp_path / name,
            [
                "++trainer.limit_train_batches=50",
                f"name=try-{name}",
                f"hydra.run.dir=x/{name}",
                f"model={model}",
                f"seed={name}",
                "callbacks.progress_bar.refresh_rate=0",
            ],  # fmt: skip
            model="BaselineCNN",
            best_val_acc=acc,
            test_acc=acc,
            epochs=2,
            fit_seconds=12.0,
        )
    main([*(str(tmp_path / name) for name in "abc"), "--out", str(tmp_path / "report")])
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "Every run was given: `trainer.limit_train_batches=50`." in summary
    assert "name=" not in summary and "hydra." not in summary and "progress_bar" not in summary and "++" not in summary
    configurations = [line.split(" | ")[0].lstrip("| ") for line in summary.splitlines() if line.startswith("| model=")]
    assert configurations[:2] == ["model=elu ★", "model=baseline"], summary
    assert (tmp_path / "report" / "sweep_model.png").stat().st_size > 5_000
    assert capsys.readouterr().out.startswith("# Runs summary")
    runs = [str(p) for p in sorted(tmp_path.glob("[abc]"))]
    main(runs)  # without --out: in the runs' common folder
    assert "3 runs: 3 ok" in (tmp_path / "summary.md").read_text() and "summary.md" not in capsys.readouterr().err
    main([str(p) for p in sorted(tmp_path.glob("*")) if p.name != "report"])  # the glob again: the report among them
    assert "3 runs: 3 ok" in (tmp_path / "summary.md").read_text()


def test_report_states_the_settings_every_job_shared_and_an_interval_wider_than_its_mean(tmp_path):
    fixed = ["trainer.max_epochs=1", "++trainer.limit_train_batches=50"]
    for job, (batch, seed, fit) in enumerate([(32, 0, 3.0), (32, 1, 120.0), (64, 0, 4.0), (64, 1, 4.2)]):
        write_job(
            tmp_path / str(job),
            [*fixed, f"data.batch_size={batch}", f"seed={seed}"],
            best_val_acc=0.9 + job / 100,
            test_acc=0.9,
            best_val_loss=0.1,
            test_loss=0.1,
            epochs=1,
            fit_seconds=fit,
            train_samples_per_second=1000.0,
        )
    write_report(tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    assert "Every job was run with: `trainer.max_epochs=1` `trainer.limit_train_batches=50`." in summary
    rows = {
        line.split(" | ")[0].lstrip("| ").rstrip(" ★"): line.split(" | ")
        for line in summary.splitlines()
        if line.startswith("| data.batch_size=") and line.count(" | ") == 6
    }  # the configurations' table
    assert rows["data.batch_size=32"][5] == "61.5 (varied more than its mean)"
    assert rows["data.batch_size=32"][2] == f"{0.905:.4f} ± {estimate([0.90, 0.91]).half_width:.4f}"  # not a time
    assert rows["data.batch_size=64"][5] == f"4.1 ± {estimate([4.0, 4.2]).half_width:.1f}"


def test_a_damaged_metrics_file_in_a_sweep_is_a_failed_job_not_a_traceback(tmp_path, capsys):
    fake_sweep(tmp_path, {32: [0.99, 0.98], 64: [0.97, 0.96]})
    (tmp_path / "1" / "metrics.json").write_text("{")
    rows = write_report(tmp_path)
    assert rows[1]["status"] == "failed" and rows[1]["reason"].startswith("metrics.json damaged")
    assert "mnist-report: skipped" in capsys.readouterr().err


@pytest.mark.parametrize("launcher", ["submitit_local"])  # joblib: test_tracking's parallel sweep
@pytest.mark.slow
def test_launcher_plugins_run_a_two_job_sweep(tmp_path, mnist_dir, launcher):
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    result = train_here(
        "-m", f"hydra/launcher={launcher}", *extra, "data.batch_size=32,64", *TINY, f"hydra.sweep.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["status"] for r in summary_rows(tmp_path)] == ["ok", "ok"]


def test_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_module

    with initialize_config_module("mnist_cnn.conf", version_base="1.3"):
        cfg = compose(
            "train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.array_parallelism) == ("gpu", 1, 16)


@pytest.mark.slow
def test_ddp_fit_with_two_cpu_processes(tmp_path, mnist_dir):
    result = run_train(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        *TINY,
        "data.eval_batch_size=40",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = metrics_of(tmp_path)
    assert metrics["history"][0]["train_samples"] == 2 * 2 * 256  # 2 batches on each of 2 ranks
    # each rank tested its own 40 images; misclassified.png shows the mistakes of both
    confusion = json.loads((tmp_path / "classification_report.json").read_text())["confusion_matrix"]
    tested = sum(map(sum, confusion))
    mistakes = tested - sum(row[i] for i, row in enumerate(confusion))
    assert tested == 80 and mistakes > 40, confusion
    assert metrics["misclassified_shown"] == mistakes
    assert metrics["config"]["trainer"]["strategy"] == "ddp"
    assert (tmp_path / "train_ddp_process_1.log").exists()
