"""Does whole-scene context help on REAL imagery with real labels? The crop baseline, the same UperNet trained
on whole scenes, and REST, on the sample datasets (`rest-hf samples`), on CPU.

    python scripts/bench_real.py --output runs/bench-real             # both datasets, seeds 0 1 2
    python scripts/bench_real.py --output runs/bench-real --ship      # ... and ship the best REST models

For each dataset, `scripts/train.py` trains three models from the dataset's REST recipe
(`scripts/configs/{bluemarble,raleigh-landsat}-rest.yaml`) for the same steps with the same pixels per step:

- crop baseline: no interaction layers, small crops (batch multiplied so the pixels per step are the same),
  validated window by window, and tested by sliding-window prediction (`rest-hf predict --mode sliding`);
- UperNet, no interaction: the recipe's large windows / whole scenes, `--interaction_stages []`;
- REST: the recipe as it is (interaction layers on every stage).

The model of each run is its `best/` folder: the step with the best validation mIoU (nothing is chosen on the
test split). Each is then run on the whole test scenes with `rest-hf predict` and scored with
`rest-hf evaluate`. The majority class of the train split is the floor every model must beat. `--ship` copies
the REST seed with the best validation mIoU of each dataset into `rest_hf/pretrained/models/` with a model card
carrying its test figures.

Prints the tables (Markdown, with the exact commands) and writes OUTPUT/bench_real-DATASETS.md and .json. Runs
that an interrupted benchmark finished are kept (their folders hold test-metrics.json): run the same command
again to continue.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "scripts" / "train.py"
CONFIGS = ROOT / "scripts" / "configs"
# dataset -> (REST recipe, crop side of the baseline, its gradient accumulation steps, what the large samples
# are, shipped model name). The crop baseline sees as many pixels per optimizer step as the recipe: its batch is
# the recipe's times (size / crop)^2, split into accumulation steps where the train split has fewer scenes
# than that (train.py draws a batch from distinct scenes).
SETUPS = {
    "bluemarble": ("bluemarble-rest.yaml", 45, 1, "whole 90 px cells", "bluemarble-rest-tiny-convnext"),
    "raleigh-landsat": (
        "raleigh-landsat-rest.yaml",
        32,
        9,
        "96 px windows",
        "raleigh-landsat-rest-tiny-convnext",
    ),
}


def run(command: list[str], env: dict[str, str], log: list[str]) -> float:
    """Run a command to the end (its wall time is returned); a failure stops the benchmark with its stderr."""
    log.append(shlex.join(str(c) for c in command))
    start = time.perf_counter()
    result = subprocess.run([str(c) for c in command], env=env, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"failed: {log[-1]}\n{result.stderr[-4000:]}")
    return time.perf_counter() - start


def records(output: Path, kind: str) -> list[dict]:
    lines = (output / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def finished_run(folder: Path) -> dict | None:
    """The record of a run that an earlier (interrupted) benchmark finished, or None.

    Runs finished by a bench_real.py that did not write bench_run.json yet are read from their metrics.jsonl and
    test-metrics.json; their train time is then the training loop's (first to last metrics record), without the
    process start-up, and `wall_time` is False.
    """
    if (folder / "bench_run.json").is_file():
        return json.loads((folder / "bench_run.json").read_text())
    if not (folder / "test-metrics.json").is_file() or not (folder / "metrics.jsonl").is_file():
        return None
    lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    end = [r for r in lines if r["kind"] == "end"]
    if not end:
        return None
    options = yaml.safe_load((folder / "train_config.yaml").read_text())
    return dict(
        seed=options["seed"],
        wall_time=False,
        steps=end[-1]["step"],
        folder=str(folder),
        train_seconds=lines[-1]["time"] - lines[0]["time"],
        predict_seconds=None,
        best_step=end[-1]["best_step"],
        val_miou=end[-1]["best_mean_iou"],
        test=json.loads((folder / "test-metrics.json").read_text()),
    )


def evaluate_on_test(
    model: Path, data: Path, out: Path, predict_options: list[str], env: dict, log: list[str]
) -> tuple[dict, float]:
    """`rest-hf predict` on every test scene, then `rest-hf evaluate` against the test labels."""
    scenes = sorted((data / "test" / "images").glob("*.tif"))
    predictions = [out / "test-predictions" / s.name for s in scenes]
    seconds = 0.0
    for scene, prediction in zip(scenes, predictions, strict=True):
        command = [sys.executable, "-m", "rest_hf", "predict", scene, "-o", prediction, "--model", model]
        seconds += run([*command, *predict_options, "--overwrite", "--no-progress"], env, log)
    report = out / "test-metrics.json"
    command = [sys.executable, "-m", "rest_hf", "evaluate", *predictions, "--reference", data / "test/labels"]
    run([*command, "--model", model, "--json", report], env, log)
    return json.loads(report.read_text()), seconds


def bench_dataset(name: str, args: argparse.Namespace, out: Path, env: dict, log: list[str]) -> dict:
    from rest_hf.samples import fetch_sample, majority_baseline

    recipe_file, crop, accumulation, large, _ = SETUPS[name]
    recipe = CONFIGS / recipe_file
    config = yaml.safe_load(recipe.read_text())
    data = fetch_sample(name, out / "data" / name)
    info = json.loads((data / "dataset_info.json").read_text())
    size, batch = int(config["crop_size"]), int(config["batch_size"])
    crops = ["--interaction_stages", "[]", "--crop_size", str(crop), "--eval_window", str(crop)]
    crops += ["--batch_size", str(batch * (size // crop) ** 2 // accumulation)]
    crops += ["--gradient_accumulation_steps", str(accumulation)]
    # (model, trained on, tested by, train.py overrides, rest-hf predict options)
    variants = [
        ("crop baseline", f"{crop} px crops", f"sliding {crop} px windows, overlap 0.5", crops,
         ["--mode", "sliding", "--window", str(crop), "--overlap", "0.5"]),
        ("UperNet, no interaction", large, "whole scene", ["--interaction_stages", "[]"], []),
        ("REST (interaction on stages 0-3)", large, "whole scene", [], []),
    ]  # fmt: skip
    rows = []
    for model, trained_on, tested_by, overrides, predict_options in variants:
        key = model.split(" ")[0].split(",")[0].lower()
        if key not in args.variants:
            continue
        seeds = []
        for seed in args.seeds:
            folder = out / name / f"{key}-seed{seed}"
            train_command = ["python", "scripts/train.py", str(recipe.relative_to(ROOT)), "--seed", str(seed)]
            train_command += [str(o) for o in [*overrides, *args.train_options]]
            done = finished_run(folder)
            if done is not None:  # a run of an interrupted benchmark: kept, not trained again
                seeds.append({**done, "command": shlex.join(train_command)})
                continue
            shutil.rmtree(folder, ignore_errors=True)
            command = [sys.executable, TRAIN, recipe, "--dataset", data, "--output_dir", folder]
            command += ["--resume", "never", "--seed", str(seed), *overrides, *args.train_options]
            seconds = run(command, env, log)
            metrics, predict_seconds = evaluate_on_test(
                folder / "best", data, folder, predict_options, env, log
            )
            seeds.append(
                run_record(seed, shlex.join(train_command), folder, seconds, metrics, predict_seconds)
            )
            (folder / "bench_run.json").write_text(json.dumps(seeds[-1], indent=2) + "\n")
            print(f"{name} {model} seed {seed}: val {seeds[-1]['val_miou']:.3f}, test mIoU "
                  f"{metrics['mean_iou']:.3f}, {seconds:.0f} s", flush=True)  # fmt: skip
        rows.append(dict(model=model, trained_on=trained_on, tested_by=tested_by, seeds=seeds))
    return dict(
        name=name,
        classes=info["classes"],
        recipe=str(recipe.relative_to(ROOT)),
        steps=int(config["max_steps"]),
        pixels_per_step=batch * size * size,
        majority=majority_baseline(info),
        rows=rows,
    )


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def table(result: dict) -> str:
    classes = result["classes"]
    head = "| model | trained on | tested by | test mIoU mean (min-max) | OA | "
    head += " | ".join(f"IoU {c}" for c in classes) + " | val mIoU | train time |"
    lines = [head, "|" + "---|" * 3 + "---:|" * (len(classes) + 4)]
    for row in result["rows"]:
        tests = [s["test"] for s in row["seeds"]]
        mious = [t["mean_iou"] for t in tests]
        ious = [mean([t["per_category_iou"][c] for t in tests]) for c in range(len(classes))]
        minutes = mean([s["train_seconds"] for s in row["seeds"]]) / 60
        loop_only = "" if all(s.get("wall_time", True) for s in row["seeds"]) else "*"
        lines.append(
            f"| {row['model']} | {row['trained_on']} | {row['tested_by']} | {pct(mean(mious))} "
            f"({pct(min(mious))}-{pct(max(mious))}) | {pct(mean([t['overall_accuracy'] for t in tests]))} | "
            + " | ".join(pct(v) for v in ious)
            + f" | {pct(mean([s['val_miou'] for s in row['seeds']]))} | {minutes:.1f} min{loop_only} |"
        )
    floor = result["majority"]
    lines.append(
        f"| majority class ({floor['majority_class']}) | train class counts | - | {pct(floor['mean_iou'])} | "
        f"{pct(floor['overall_accuracy'])} | " + " | ".join(pct(v) for v in floor["per_category_iou"])
        + " | - | - |"
    )  # fmt: skip
    seeds = "\n".join(
        f"- {row['model']}: " + ", ".join(
            f"seed {s['seed']} test {pct(s['test']['mean_iou'])} (val {pct(s['val_miou'])}, step "
            f"{s['best_step']})" for s in row["seeds"]
        )
        for row in result["rows"]
    )  # fmt: skip
    note = "\n\nTrain time: mean wall time of one train.py run (* training loop only, from metrics.jsonl)."
    return (
        "\n".join(lines) + note + "\n\nPer seed (test mIoU, validation mIoU of the chosen step):\n\n" + seeds
    )


def train_longer(result: dict, args: argparse.Namespace, out: Path, env: dict, log: list[str]) -> dict:
    """The REST recipe with the comparison's best-validation seed, trained for `--ship-steps` steps."""
    seed = max(result["rows"][-1]["seeds"], key=lambda s: s["val_miou"])["seed"]
    recipe, data = ROOT / result["recipe"], out / "data" / result["name"]
    folder = out / result["name"] / f"rest-seed{seed}-{args.ship_steps}-steps"
    options = ["--seed", str(seed), "--max_steps", str(args.ship_steps)]
    options += ["--eval_every", str(max(1, args.ship_steps // 4))]
    done = finished_run(folder)
    if done is not None:
        return {**done, "command": shlex.join(["python", "scripts/train.py", result["recipe"], *options])}
    shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, TRAIN, recipe, "--dataset", data, "--output_dir", folder, "--resume", "never"]
    seconds = run([*command, *options], env, log)
    metrics, predict_seconds = evaluate_on_test(folder / "best", data, folder, [], env, log)
    command_line = shlex.join(["python", "scripts/train.py", result["recipe"], *options])
    return run_record(seed, command_line, folder, seconds, metrics, predict_seconds)


def run_record(
    seed: int, command: str, folder: Path, seconds: float, metrics: dict, predict_seconds: float
) -> dict:
    """What one finished train.py run contributes to the tables (and to its folder's bench_run.json)."""
    end = records(folder, "end")[-1]
    return dict(
        seed=seed,
        wall_time=True,
        command=command,
        steps=end["step"],
        folder=str(folder),
        train_seconds=seconds,
        predict_seconds=predict_seconds,
        best_step=end["best_step"],
        val_miou=end["best_mean_iou"],
        test=metrics,
    )


def ship(result: dict, args: argparse.Namespace, candidates: list[dict]) -> Path:
    """Copy the candidate REST model with the best validation mIoU into the package, with a model card."""
    best = max(candidates, key=lambda s: s["val_miou"])
    result["shipped"] = best
    name = SETUPS[result["name"]][4]
    target = ROOT / "rest_hf" / "pretrained" / "models" / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for file in ("config.json", "model.safetensors", "preprocessor_config.json"):
        shutil.copy2(Path(best["folder"]) / "best" / file, target / file)
    info = json.loads((Path(args.output) / "data" / result["name"] / "dataset_info.json").read_text())
    listed = "; ".join(f"`{c['command']}`: val mIoU {pct(c['val_miou'])}" for c in candidates)
    reproduce = [
        "python",
        "scripts/bench_real.py",
        "--datasets",
        result["name"],
        "--variants",
        *args.variants,
    ]
    reproduce += ["--seeds", *map(str, args.seeds), "--ship"]
    reproduce += ["--ship-steps", str(args.ship_steps)] if args.ship_steps else []
    card = model_card(name, result, best, info, listed, shlex.join(reproduce))
    (target / "README.md").write_text(card)
    (target / "test_metrics.json").write_text(json.dumps(best["test"], indent=2) + "\n")
    return target


def model_card(name: str, result: dict, best: dict, info: dict, candidates: str, reproduce: str) -> str:
    test, classes = best["test"], result["classes"]
    per_class = "\n".join(f"| {c} | {pct(test['per_category_iou'][i])} |" for i, c in enumerate(classes))
    floor = result["majority"]
    splits = "\n".join(f"- {k}: {v}" for k, v in info["splits"].items())
    missed = [c for i, c in enumerate(classes) if (test["per_category_iou"][i] or 0) < 0.01]
    limits = "A short CPU training of a tiny model: " + (
        f"it does not recognise {', '.join(missed)} on the test split (IoU below 1 %)." if missed else
        "every class is recognised, some poorly (see the table)."
    )  # fmt: skip
    return f"""---
library_name: transformers
license: apache-2.0
pipeline_tag: image-segmentation
tags: [remote-sensing, semantic-segmentation, whole-scene, rest, rest_hf, convnextv2]
---

# {name}

A tiny REST model (rest_hf preset `tiny-convnext`: ConvNeXt-V2 with 8-64 channels, one block per stage,
global interaction layers on stages 0-3, UperNet decoder) trained on the `{result["name"]}` sample dataset
(`rest-hf samples fetch {result["name"]} DIR`). It ships inside the rest_hf package: `--model {name}` or
`RestForSemanticSegmentation.from_pretrained(shipped_model_path("{name}"))`. It is a demonstration of a
real, trained model on CPU-sized data, not a production land-cover model.

## Data

{info["title"]}. Classes: {", ".join(classes)}.

- Labels: {info["labels"]}
- Source: {", ".join(s["wheel"] for s in info["source"])} (data files only)
- **Licence of the data: {info["licence"]}.**
- Citation: {info["citation"]}

Split (no pixel in two splits):

{splits}

## Training

```
rest-hf samples fetch {result["name"]} data/{result["name"]}
{best["command"]}
```

{best["steps"]} steps of {result["pixels_per_step"]} pixels per step, one CPU process,
{best["train_seconds"] / 60:.1f} min on the shared 2-core machine; the weights are those of the step with the
best validation mIoU (step {best["best_step"]}, val mIoU {pct(best["val_miou"])}). It was chosen on the
validation split among the REST runs {candidates} (`docs/benchmarks.md`);
`{reproduce}` reproduces the runs and this folder.

## Test metrics (whole test scenes, holistic `rest-hf predict`, `rest-hf evaluate`)

mIoU **{pct(test["mean_iou"])}**, overall accuracy {pct(test["overall_accuracy"])} (majority class
`{floor["majority_class"]}`: mIoU {pct(floor["mean_iou"])}, OA {pct(floor["overall_accuracy"])}).

| class | IoU |
|---|---:|
{per_class}

**Limitations.** {limits}

The crop baseline and the whole-scene UperNet of the same budget are compared in `docs/benchmarks.md`.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="crop baseline vs whole-scene UperNet vs REST on real data")
    parser.add_argument("--output", default="runs/bench-real", help="folder for data, runs and tables")
    parser.add_argument("--datasets", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--threads", type=int, default=2, help="OMP threads of every run")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["crop", "upernet", "rest"],
        choices=["crop", "upernet", "rest"],
        help="which models to train (REST must be among them for --ship)",
    )
    parser.add_argument("--ship", action="store_true", help="copy the best REST models into the package")
    parser.add_argument(
        "--ship-steps",
        type=int,
        default=0,
        help="with --ship: also train the best REST seed for this many steps; the shipped model is the REST "
        "candidate with the best validation mIoU",
    )
    parser.add_argument(
        "--train-options", default="", help="extra scripts/train.py options for every run (quoted)"
    )
    args = parser.parse_args()
    args.train_options = shlex.split(args.train_options)
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    start = time.perf_counter()
    report, results, log = [], [], []
    for name in args.datasets:
        result = bench_dataset(name, args, out, env, log)
        results.append(result)
        report += [
            f"`{name}` ({result['recipe']}, tiny-convnext, {result['steps']} steps of "
            f"{result['pixels_per_step']} px, seeds {args.seeds}; test split, metrics in percent):",
            "",
            table(result),
            "",
        ]
        if args.ship:
            candidates = list(result["rows"][-1]["seeds"])
            if args.ship_steps:
                candidates.append(train_longer(result, args, out, env, log))
            folder = ship(result, args, candidates).relative_to(ROOT)
            shipped = result["shipped"]
            report += [
                f"Shipped {folder}: `{shipped['command']}`, val mIoU {pct(shipped['val_miou'])}, test mIoU "
                f"{pct(shipped['test']['mean_iou'])}, OA {pct(shipped['test']['overall_accuracy'])} "
                f"(candidates' val mIoU: {', '.join(pct(c['val_miou']) for c in candidates)})",
                "",
            ]
    minutes = (time.perf_counter() - start) / 60
    report += [f"Whole benchmark: {minutes:.1f} min wall.", "", "Commands run:", "", "```", *log, "```", ""]
    text = "\n".join(report)
    print(text)
    stem = "bench_real-" + "-".join(args.datasets)
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(
        json.dumps({"args": vars(args), "minutes": minutes, "results": results, "commands": log}, indent=2)
    )


if __name__ == "__main__":
    main()
