"""Does whole-scene context matter? A synthetic task where it must: the crop baseline against REST, on CPU.

    python scripts/bench_context.py --output runs/bench-context

1. Accuracy. Scenes of the `context` task (`rest_hf/training/synthetic.py`): a large textured region whose class
   (red or green) is set only by a coloured stripe along one edge of the scene, far from the region. Tiny
   models with the same backbone are trained by `scripts/train.py` for the same steps on the same number of
   pixels per step: the crop baseline (no interaction layers, small crops, evaluated window by window as a crop
   model is), the same UperNet trained on whole scenes, and REST (interaction layers on every stage, whole
   scenes). The crop baseline is also evaluated on whole scenes, to separate what the training crops cost from
   what the inference windows cost.
2. Cost. REST training throughput and peak memory per process on larger scenes for P = 1 and 2 processes (grid
   1x1 and 1x2, one thread each, gloo), and with activation checkpointing.

Prints both tables (Markdown) and writes them to OUTPUT/bench_context.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "scripts" / "train.py"
CONFIG = ROOT / "scripts" / "configs" / "tiny-cpu.yaml"
TORCHRUN = Path(sys.executable).with_name("torchrun")


def train(output: Path, dataset: Path, processes: int, threads: int, *overrides: str) -> float:
    """Run scripts/train.py to the end (one process, or torchrun with `processes`); returns the wall time."""
    launcher = [sys.executable]
    if processes > 1:
        launcher = [str(TORCHRUN), "--standalone", "--nproc_per_node", str(processes)]
    options = (
        f"--dataset {dataset} --output_dir {output} --resume never --num_workers 1 --save_every 0".split()
    )
    command = [*launcher, str(TRAIN), str(CONFIG), *options, *overrides]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"training failed ({' '.join(command)}):\n{result.stderr[-4000:]}")
    return time.perf_counter() - start


def records(output: Path, kind: str) -> list[dict]:
    from rest_hf.training import read_metrics

    return [r for r in read_metrics(output / "metrics.jsonl") if r["kind"] == kind]


def evaluate_whole_scenes(folder: Path, dataset: Path) -> dict:
    """mIoU of a saved model on the validation scenes, whole, in this process."""
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from rest_hf import RestForSemanticSegmentation, RestImageProcessor
    from rest_hf.data import collate_samples, dataset_info, scan_layout
    from rest_hf.training import evaluate
    from rest_hf.training.data import WindowedSceneDataset, scene_sizes

    model = RestForSemanticSegmentation.from_pretrained(folder)
    processor = RestImageProcessor.from_pretrained(folder)
    info = dataset_info("folder", dataset, "val")
    scenes = scan_layout(dataset, "folder", "val")
    windows = WindowedSceneDataset(scenes, scene_sizes(scenes, info), info, processor, None, None, 1, 1)
    loader = DataLoader(windows, 1, collate_fn=collate_samples)
    return evaluate(model, loader, info.num_labels, info.ignore_index, Accelerator(cpu=True), info.id2label)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def accuracy_table(args: argparse.Namespace, out: Path) -> tuple[str, list[dict]]:
    from rest_hf.training import write_synthetic_dataset

    data = write_synthetic_dataset(
        out / "data-context", "context", args.train_scenes, args.val_scenes, args.size
    )
    common = f"--model {args.model} --max_steps {args.steps} --eval_every {args.steps} --log_every 10 "
    common += f"--augment none --learning_rate {args.lr} --warmup_steps 20"
    crops = f"--crop_size {args.crop} --eval_window {args.crop} --batch_size {args.batch * (args.size // args.crop) ** 2}"
    scenes = f"--crop_size {args.size} --batch_size {args.batch}"
    whole = f"whole {args.size} px scenes"
    # (name, trained on, evaluated on, options): the same steps and pixels per step for every model.
    runs = [
        (
            "crop baseline",
            f"{args.crop} px crops",
            f"{args.crop} px windows",
            f"--interaction_stages [] {crops}",
        ),
        ("crop baseline", f"{args.crop} px crops", "whole scenes", None),  # the same models, whole scenes
        ("UperNet, no interaction", whole, "whole scenes", f"--interaction_stages [] {scenes}"),
        ("REST", whole, "whole scenes", scenes),
    ]
    rows = []
    for name, trained_on, evaluated_on, options in runs:
        results, seconds = [], []
        for seed in args.seeds:
            folder = out / f"{name.split(',')[0].replace(' ', '-')}-seed{seed}"
            if options is None:  # is it the crops it learnt from, or the windows it sees at inference?
                metrics = evaluate_whole_scenes(folder / "final", data)
                results.append((metrics["mean_iou"], [float(v) for v in metrics["per_category_iou"]]))
                continue
            seconds.append(
                train(folder, data, 1, args.threads, *common.split(), *options.split(), "--seed", str(seed))
            )
            final = records(folder, "eval")[-1]
            results.append((final["mean_iou"], final["per_category_iou"]))
        mious = [m for m, _ in results]
        rows.append(
            dict(
                model=name,
                trained_on=trained_on,
                evaluated_on=evaluated_on,
                miou=mious,
                iou=[sum(c) / len(c) for c in zip(*(i for _, i in results), strict=True)],
                minutes=sum(seconds) / len(seconds) / 60 if seconds else None,
            )
        )
    lines = [
        "| model | trained on | evaluated on | mIoU mean (min-max) | IoU background | IoU region red | "
        "IoU region green | training time |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        miou = f"{pct(sum(r['miou']) / len(r['miou']))} ({pct(min(r['miou']))}-{pct(max(r['miou']))})"
        ious = " | ".join(pct(v) for v in r["iou"])
        minutes = "" if r["minutes"] is None else f"{r['minutes']:.1f} min"
        lines.append(
            f"| {r['model']} | {r['trained_on']} | {r['evaluated_on']} | {miou} | {ious} | {minutes} |"
        )
    return "\n".join(lines), rows


def cost_table(args: argparse.Namespace, out: Path) -> tuple[str, list[dict]]:
    from rest_hf.training import write_synthetic_dataset

    data = write_synthetic_dataset(out / "data-cost", "context", 8, 0, args.cost_size, seed=1)
    rows = []
    for processes, grid, checkpointing in ((1, "1x1", False), (2, "1x2", False), (2, "1x2", True)):
        folder = out / f"cost-p{processes}{'-ckpt' if checkpointing else ''}"
        options = (
            f"--model {args.model} --grid {grid} --crop_size {args.cost_size} --batch_size 2 --max_steps 10 "
        )
        options += f"--log_every 5 --val_split none --augment none --activation_checkpointing {checkpointing}"
        train(folder, data, processes, 1, *options.split())
        last = records(folder, "train")[-1]  # steps 6-10: after the first steps' warm-up
        start = records(folder, "start")[0]["start_memory_mb_per_process"]
        peaks = last["peak_memory_mb_per_process"]
        rows.append(
            dict(
                processes=processes,
                grid=grid,
                checkpointing=checkpointing,
                scenes_per_s=last["scenes_per_s"],
                pixels_per_s=last["pixels_per_s"],
                peak_mb=max(peaks),
                training_mb=max(p - s for p, s in zip(peaks, start, strict=True)),
            )
        )
    lines = [
        "| processes | grid | activation checkpointing | scenes/s | Mpx/s | peak MiB per process | MiB added by training |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['processes']} | {r['grid']} | {'yes' if r['checkpointing'] else 'no'} | "
            f"{r['scenes_per_s']:.2f} | {r['pixels_per_s'] / 1e6:.3f} | {r['peak_mb']:.0f} | "
            f"{r['training_mb']:.0f} |"
        )
    return "\n".join(lines), rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description="crop baseline vs REST on a task that needs whole-scene context"
    )
    parser.add_argument("--output", default="runs/bench-context", help="folder for data, runs and tables")
    parser.add_argument("--model", default="tiny-convnext", help="preset of both models")
    parser.add_argument("--size", type=int, default=128, help="scene side (px) of the accuracy task")
    parser.add_argument(
        "--crop", type=int, default=32, help="training crop and inference window of the baseline"
    )
    parser.add_argument(
        "--batch", type=int, default=4, help="REST scenes per step (the baseline gets as many pixels)"
    )
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps of each model")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds of each model"
    )
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of both models")
    parser.add_argument("--train-scenes", type=int, default=64)
    parser.add_argument("--val-scenes", type=int, default=16)
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="threads of the accuracy runs"
    )
    parser.add_argument("--cost-size", type=int, default=512, help="scene side (px) of the cost runs")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    report, results = [], {}
    if not args.skip_accuracy:
        table, results["accuracy"] = accuracy_table(args, out)
        report += [
            f"Accuracy ({args.model}, {args.steps} steps, {args.size} px scenes, lr {args.lr:g}, seeds {args.seeds}):",
            "",
            table,
            "",
        ]
    if not args.skip_cost:
        table, results["cost"] = cost_table(args, out)
        report += [
            f"REST training cost ({args.model}, {args.cost_size} px scenes, batch 2, CPU, 1 thread per process):",
            "",
            table,
            "",
        ]
    text = "\n".join(report)
    print(text)
    (out / "bench_context.md").write_text(text)
    (out / "bench_context.json").write_text(json.dumps({"args": vars(args), **results}, indent=2))


if __name__ == "__main__":
    main()
