"""The benchmark scripts run end to end on a tiny job (their timings are not checked)."""

import json
import os
import re
import sys

import pytest

from tests.conftest import run_program, skip_without_kernel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.slow


def run_benchmark(script, *args, **env):
    """``python benchmarks/<script> *args`` from the repository, ``env`` added; it starts
    TensorFlow as the programs do, without its start-up lines (the CUDA probe's ERROR here)."""
    # The script's own log level: unset here.
    result = run_program([os.path.join(REPO, "benchmarks", script), *args], TF_CPP_MIN_LOG_LEVEL=None, **env)
    assert "cuInit" not in result.stderr and "cudart_stub" not in result.stderr, result.stderr[:2000]
    return result


def run_pipeline_benchmark(*args):
    return run_benchmark("pipeline.py", *args)


def test_pipeline_benchmark_measures_every_candidate_and_prints_the_ratios():
    result = run_pipeline_benchmark("--num_files=10", "--images=64", "--repeats=1", "--image_size=32", "--batch_size=8")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for name in (
        "seed pipeline",
        "seed, no auto-parallel",
        "pipelines.load",
        "pipelines.load, TF ops",
        "pipelines.load, autotune",
        "decode only (floor)",
        "decode + resize only",
        "pipelines.load, cache=True",
    ):
        match = re.search(rf"^\s*{re.escape(name)}:\s+([\d.]+) images/s", out, re.M)
        assert match and float(match.group(1)) > 0, f"no figure for {name!r} in:\n{out}"
    for ratio in (
        "ours / seed pipeline: ",
        "ours / decode-only floor: ",
        "ours / decode + resize only: ",
        "ours / decode-only floor, round by round (measured seconds apart, so drift cancels): median ",
        "ours with cache=True / seed pipeline: ",
        "fused kernel / TF ops (both ours): ",
        "ours (tf.data autotuning off, the default) / ours with autotune=True: ",
        "ours with TF ops instead of the fused kernel / decode-only floor: ",
    ):
        assert ratio in out
    assert re.search(r"peak RSS, one pass over 100 files \(1x files\): \d+ MiB", out)
    assert re.search(r"peak RSS, one pass over 400 files \(4x files\): \d+ MiB", out)


def test_pipeline_benchmark_refuses_a_folder_without_jpegs(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "notes.txt").write_text("not a photo")
    result = run_pipeline_benchmark(f"--images_dir={tmp_path}")
    assert result.returncode != 0
    assert "no JPEGs in class subfolders" in result.stdout + result.stderr
    result = run_pipeline_benchmark(f"--images_dir={tmp_path / 'missing'}")
    assert result.returncode != 0 and "is not a folder" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_jpeg_decode_benchmark_times_every_window():
    result = run_benchmark("jpeg_decode.py", "--num_files=5", "--images=32", "--repeats=1")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in (
        "full decode",
        "centre 90% square",
        "16x16 at bottom right",
        "16 columns, all rows",
        "16x16 at top left",
        "ratio=2",
    ):
        match = re.search(
            rf"^\s*{re.escape(name)}:\s+([\d.]+) images/s, +(\d+)% of a full decode's time", result.stdout, re.M
        )
        assert match and float(match.group(1)) > 0, f"no figure for {name!r} in:\n{result.stdout}"
    assert re.search(r"full decode: .*100% of a full decode's time", result.stdout)


def run_resize_flip_benchmark(*args, **env):
    return run_benchmark("resize_flip.py", *args, **env)


def test_resize_flip_benchmark_times_the_kernel_against_the_tf_ops():
    from pipelines import fused

    if fused.status()[0] is None:
        skip_without_kernel(fused.status()[1])
    result = run_resize_flip_benchmark("--height=40", "--width=30", "--size=16", "--iterations=20", "--repeats=1")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("TF ops (cast + resize + reverse)", "fused kernel"):
        match = re.search(rf"^\s*{re.escape(name)}:\s+([\d.]+) us/image", result.stdout, re.M)
        assert match and float(match.group(1)) > 0, f"no figure for {name!r} in:\n{result.stdout}"
    assert re.search(r"fused kernel speed-up: [\d.]+x", result.stdout)


def test_resize_flip_benchmark_says_why_it_cannot_run():
    result = run_resize_flip_benchmark(ZOO_FUSED_OPS="0")
    assert result.returncode != 0 and "the fused kernel is not available: ZOO_FUSED_OPS=0" in result.stderr
    result = run_resize_flip_benchmark("--size=0")
    assert result.returncode != 0 and "--size=0: must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_replicated_benchmark_folders_count_every_link(tmp_path):
    # The folder source lists a symlinked file once; the benchmark's "more files" must stay more.
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    try:
        from jpegs import replicate, write_jpegs
    finally:
        sys.path.pop(0)
    import pipelines

    write_jpegs(str(tmp_path / "src"), 4)  # class0..class3, one JPEG each
    replicate(str(tmp_path / "src"), str(tmp_path / "many"), 3)
    _, info = pipelines.load(f"dir:{tmp_path / 'many'}", "train+validation+test", image_size=16)
    assert info.num_examples == 12


def test_augment_cost_benchmark_times_each_policy_and_keras_randaugment_beside_ours():
    tiny = ("--num_files=10", "--images=16", "--repeats=1", "--image_size=32", "--batch_size=8")
    result = run_benchmark("augment_cost.py", *tiny, "--policies=randaugment")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^(crop,flip\S*(?: RandAugment per image)?) +(\d+) +([\d.]+)x$", result.stdout, re.M)
    names = ["crop,flip", "crop,flip,randaugment", "crop,flip,Keras's RandAugment per image"]
    assert [row[0] for row in rows] == names, result.stdout
    assert all(int(row[1]) > 0 for row in rows) and rows[0][2] == "1.00", result.stdout
    assert re.search(r"^randaugment, ours / Keras's layer on each image: [\d.]+x$", result.stdout, re.M), result.stdout
    bad = run_benchmark("augment_cost.py", *tiny, "--policies=rotate")
    assert bad.returncode != 0 and "--policies=rotate: accepted: randaugment, erase," in bad.stderr, bad.stderr[-2000:]


def test_first_step_benchmark_times_a_run_with_the_step_traced_twice_and_once():
    result = run_benchmark("first_step.py", "--models=fashion_cnn", "--image_size=16", "--repeats=1")
    assert result.returncode == 0, result.stderr[-3000:]
    row = (
        r"^fashion_cnn at 16 px: Keras's lazy build [\d.]+ s \(step traced 2x\), "
        r"built first [\d.]+ s \(traced 1x\): [\d.]+x$"
    )
    assert re.search(row, result.stdout, re.M), result.stdout
    bad = run_benchmark("first_step.py", "--models=resnet9")
    assert bad.returncode != 0 and "--models: unknown resnet9; `python -m zoo` lists the models" in bad.stderr


def test_train_speed_benchmark_prints_both_rates_the_ratio_and_both_losses():
    result = run_benchmark("train_speed.py", "--examples=128", "--rounds=1")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^seed \(Sequential, fit on NumPy\): \d+ examples/s$", out, re.M), out
    assert re.search(r"^ours \(trainer's steps, tf.data\): +\d+ examples/s$", out, re.M), out
    assert re.search(r"^ours / seed: [\d.]+x$", out, re.M), out
    losses = re.search(r"^training loss after 2 epochs: seed ([\d.]+), ours ([\d.]+)$", out, re.M)
    assert losses and all(float(v) > 0 for v in losses.groups()), out
    held_out = r"^held-out \(\d+ images\): seed loss [\d.]+ accuracy [\d.]+, ours loss [\d.]+ accuracy [\d.]+$"
    assert re.search(held_out, out, re.M), out
    # Another zoo model: the same model through plain `fit` on NumPy against the trainer's steps.
    other = run_benchmark("train_speed.py", "--model=resnet18", "--image_size=32", "--examples=64", "--rounds=1")
    assert other.returncode == 0, other.stderr[-3000:]
    assert re.search(r"^plain fit on NumPy \(resnet18\): \d+ examples/s$", other.stdout, re.M), other.stdout
    assert re.search(r"^ours / seed: [\d.]+x$", other.stdout, re.M), other.stdout
    bad = run_benchmark("train_speed.py", "--rounds=0")
    assert bad.returncode != 0 and "--rounds" in bad.stderr


def test_trial_start_benchmark_times_both_ways_of_starting_a_trial_and_prints_the_ratio():
    result = run_benchmark("trial_start.py", "--trials=1")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for method in ("spawn", "forkserver"):
        assert len(re.findall(rf"^{method} trial 1: [\d.]+ s$", out, re.M)) == 1, out
    assert re.search(r"^forkserver trial that starts the server: [\d.]+ s$", out, re.M), out
    assert re.search(r"^spawn / forkserver: [\d.]+x$", out, re.M), out
    same = re.search(r"^validation accuracy: spawn ([\d.]+), forkserver ([\d.]+)$", out, re.M)
    assert same and same.group(1) == same.group(2), out  # the same trial, however it started


def test_train_step_benchmark_measures_each_setting_and_writes_json_lines(tmp_path):
    out = tmp_path / "results.jsonl"
    tiny = ("--batch_size=2", "--steps=2")
    result = run_benchmark(
        "train_step.py", *tiny, "--models=fashion_cnn,resnet18", "--image_size=32", "--sweep", f"--out={out}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # The sweep: defaults, then precision, TF32, steps per execution, optimizer and XLA one at a time.
    sweep = [row for row in rows if row["model"] == "fashion_cnn"]
    assert [(r["precision"], r["tf32"], r["steps_per_execution"], r["optimizer"], r["jit_compile"]) for r in sweep] == [
        ("float32", True, 1, "sgd", "auto"),
        ("mixed_bfloat16", True, 1, "sgd", "auto"),
        ("float32", False, 1, "sgd", "auto"),
        ("float32", True, 8, "sgd", "auto"),
        ("float32", True, 1, "adamw", "auto"),
        ("float32", True, 1, "sgd", "true"),
    ]
    assert [row["model"] for row in rows[len(sweep) :]] == ["resnet18"]
    for row in rows:
        assert row["backend"] == "tensorflow" and row["images_per_s"] > 0 and row["first_step_s"] > 0
        assert re.search(rf"^{row['model']} .* images/s", result.stdout, re.M)
    # A transfer phase: the heads only (frozen backbone).
    frozen = run_benchmark("train_step.py", *tiny, "--models=fashion_cnn", "--phase=frozen", f"--out={out}")
    assert frozen.returncode == 0, frozen.stderr[-3000:]
    row = json.loads(out.read_text().splitlines()[-1])
    assert row["phase"] == "frozen" and row["images_per_s"] > 0 and "phase=frozen" in frozen.stdout
    unknown = run_benchmark("train_step.py", *tiny, "--models=resnet99")
    assert unknown.returncode == 2 and "error: --models: unknown resnet99; accepted: convnextbase," in unknown.stderr
    assert ", fashion_cnn, " in unknown.stderr


def test_folder_memory_benchmark_trains_on_n_and_10n_images_and_prints_both_peaks(tmp_path):
    result = run_benchmark(
        "folder_memory.py", "--images=20", "--image_size=16", "--batch_size=4", f"--work_dir={tmp_path}", "--bombs=1"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^  N:     20 images, one epoch at 16 px: peak \d+ MiB$", result.stdout, re.M), result.stdout
    assert re.search(r"^10N:    200 images, one epoch at 16 px: peak \d+ MiB$", result.stdout, re.M), result.stdout
    assert re.search(r"^10N / N peak memory: [\d.]+x$", result.stdout, re.M), result.stdout
    bombs = r"^N \+ 1 bombs \(23000x23000 declared, --skip_bad_files\): peak \d+ MiB$"
    assert re.search(bombs, result.stdout, re.M), result.stdout
    assert re.search(r"^with bombs / N peak memory: [\d.]+x$", result.stdout, re.M), result.stdout


def test_data_autotune_benchmark_times_the_same_training_both_ways():
    result = run_benchmark("data_autotune.py", "--epochs=1", "--rounds=1", "--image_size=16", "--train_examples=64")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^autotune off \(the trainer's default\): [\d.]+ s$", out, re.M), out
    assert re.search(r"^autotune on: +[\d.]+ s$", out, re.M), out
    assert re.search(r"^on / off: [\d.]+x$", out, re.M), out
    accuracies = re.search(r"^test accuracy: off ([\d.]+), on ([\d.]+)$", out, re.M)
    assert accuracies and accuracies.group(1) == accuracies.group(2), out  # same data, same seed: same run


def test_resume_stream_benchmark_times_both_ways_to_the_same_first_batch():
    result = run_benchmark(
        "resume_stream.py", "--examples=32", "--image_size=16", "--batch_size=8", "--epochs=2", "--rounds=1"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^started at its batch \(first_batch\): [\d.]+ s to the first batch$", out, re.M), out
    assert re.search(r"^read from 0, skip\(N\): +[\d.]+ s to the first batch$", out, re.M), out
    assert re.search(r"^skip\(N\) / first_batch: [\d.]+x$", out, re.M), out
    assert "same first batch: yes" in out, out
    bad = run_benchmark("resume_stream.py", "--examples=8", "--batch_size=16")
    assert bad.returncode != 0 and "--batch_size=16: larger than --examples=8" in bad.stderr, bad.stderr[-2000:]
