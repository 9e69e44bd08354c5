"""Train a REST model on whole scenes (or large crops) split over processes, exactly as one process would.

Configuration is a YAML file of `TrainConfig` fields (`rest_hf/training/config.py`), then `--name value`
overrides::

    python scripts/train.py scripts/configs/tiny-cpu.yaml --max_steps 3 --output_dir runs/try

Launching (the grid's rows x cols processes share one sample; world_size / (rows x cols) groups read different
samples):

- GPUs: ``accelerate launch --num_processes 4 scripts/train.py CONFIG.yaml --grid 2x2``, or
  ``torchrun --nproc_per_node 4 scripts/train.py CONFIG.yaml --grid 2x2`` (NCCL).
- CPU, several processes (gloo): ``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2
  scripts/train.py CONFIG.yaml --grid 1x2``, or ``torchrun --nproc_per_node 2 scripts/train.py ...``.
  (``accelerate launch --cpu --num_processes 2`` starts only one process.)

Run it again with the same command after a crash or a kill: it resumes from the last complete checkpoint under
`output_dir/checkpoints/` (optimizer, schedule, RNG, sampler position and step). Outputs: `metrics.jsonl`,
`tensorboard/` (when installed), `best/` (the best validation mIoU) and `final/`, both `save_pretrained` folders
that `RestForSemanticSegmentation.from_pretrained` and `rest-hf predict --model` load.

Accelerate supplies the device, mixed precision, gradient accumulation and checkpoint state; the model, the
data loaders and the scheduler are deliberately not passed to `accelerator.prepare` (see
`rest_hf/training/step.py` and `data.py`: DDP's gradient averaging and accelerate's batch sharding would break
the spatial split).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from rest_hf.data import SceneSampler
from rest_hf.distributed import exit_alone, exit_with_launcher, gather_objects, peak_memory_bytes, run_on_main
from rest_hf.metrics import format_table, metrics_to_json
from rest_hf.spatial import GradientReducer, SpatialContext, TileRule, parallelize_spatial
from rest_hf.training import (
    RunLog,
    TrainConfig,
    UnreadableSceneError,
    batches_forever,
    build_image_processor,
    build_loaders,
    build_model,
    build_optimizer,
    build_scheduler,
    check_batch_size,
    check_free_space,
    check_output_dir,
    checkpoint_bytes,
    evaluate,
    find_resume_checkpoint,
    freeze,
    frozen_modules,
    load_run_data,
    load_training_state,
    model_bytes,
    parse_train_config,
    remove_partial_writes,
    save_model_folder,
    save_training_state,
    set_train_mode,
    train_step,
)


def main(argv: list[str] | None = None) -> None:
    # ------------------------------------------------------------------------------------------ configuration
    config = parse_train_config(sys.argv[1:] if argv is None else argv)
    output_dir = Path(config.output_dir)
    exit_with_launcher()  # killing torchrun / accelerate launch stops every worker (see its docstring)

    # -------------------------------------------------------------------------------- distributed set-up
    # Accelerate joins the process group started by torchrun / accelerate launch (gloo on CPU, NCCL on GPUs);
    # the (data-parallel x spatial) mesh follows from the world size and the grid.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
    )
    ctx = SpatialContext.init(config.grid)
    is_main = accelerator.is_main_process
    run_on_main(lambda: check_output_dir(output_dir))

    # ---------------------------------------------------------------------------------------------- data
    # Scanned and validated once, before any training: a bad file fails every process with one message.
    data = load_run_data(config)
    info = data.info

    # --------------------------------------------------------------------------------------------- model
    # The same seed on every process gives every process the same initial weights.
    set_seed(config.seed)
    model = build_model(config.model, info, config.init_from, config.interaction_stages, config.backbone_init)
    processor = build_image_processor(config.init_from or config.model, model.config, info)
    check_batch_size(model.config, config.batch_size)
    frozen = frozen_modules(model, config.freeze_stages)
    freeze(frozen)
    model.to(accelerator.device)
    parallelize_spatial(model, ctx, mode=config.spatial_mode)
    if config.activation_checkpointing:
        # transformers' mechanism: every backbone block and interaction layer is a GradientCheckpointingLayer.
        model.gradient_checkpointing_enable()
    # Gradients are summed over the spatial group bucket by bucket while backward still runs (like DDP).
    reducer = GradientReducer(model, ctx)
    train_loader, sampler, val_loader = build_loaders(
        config, data, processor, ctx, TileRule.from_config(model.config)
    )
    # Stochastic depth must drop the same samples on every process of a spatial group (they hold parts of the
    # same samples), and may differ between groups.
    torch.manual_seed(config.seed + 1 + ctx.dp_rank)

    # --------------------------------------------------------------------------------- optimizer, schedule
    optimizer = build_optimizer(
        model, config.learning_rate, config.weight_decay, (config.adam_beta1, config.adam_beta2)
    )
    scheduler = build_scheduler(
        optimizer,
        config.max_steps,
        config.warmup_steps,
        config.warmup_ratio,
        config.poly_power,
        config.min_learning_rate,
    )
    optimizer = accelerator.prepare(optimizer)
    accelerator.register_for_checkpointing(model)
    accelerator.register_for_checkpointing(scheduler)
    needed = checkpoint_bytes(model)
    run_on_main(
        lambda: check_free_space(output_dir, needed + model_bytes(model), "a checkpoint and a model folder")
    )

    # ------------------------------------------------------------------------------------------- resume
    run_on_main(lambda: remove_partial_writes(output_dir))
    resume_from = run_on_main(lambda: find_resume_checkpoint(output_dir, config.resume))
    # `last_eval`: the latest validation (metrics_to_json), shown on the model cards.
    step, best, last_eval = 0, {"mean_iou": None, "step": None}, None
    if resume_from is not None:
        state = load_training_state(accelerator, resume_from)
        step, best, last_eval = int(state["step"]), state["best"], state["last_eval"]
        sampler.load_state_dict(state["sampler"])
    log = RunLog(output_dir, enabled=is_main)
    if is_main:
        (output_dir / "train_config.yaml").write_text(config.to_yaml())
        print(
            f"{model.config.backbone_config.model_type} REST model, interaction stages "
            f"{model.config.interaction_stages}, {ctx.dp_size} x grid {ctx.rows}x{ctx.cols} processes, "
            f"{len(data.train)} training / {len(data.val)} validation scenes; output {output_dir}"
        )
        if resume_from is not None:
            print(f"resuming from {resume_from} (step {step})")
    log.write(
        "resume" if resume_from is not None else "start",
        step,
        checkpoint=str(resume_from or ""),
        world_size=accelerator.num_processes,
        grid=config.grid,
        dp_size=ctx.dp_size,
        # Memory before the first step (libraries, model, optimizer): the training's own cost is the difference.
        start_memory_mb_per_process=gather_objects(round(peak_memory_bytes(accelerator.device) / 2**20, 1)),
    )

    # --------------------------------------------------------------------------------------------- loop
    set_train_mode(model, frozen)
    batches = batches_forever(train_loader, sampler)
    progress = tqdm(total=config.max_steps, initial=step, disable=not is_main, desc="train", unit="step")
    window_start, window_samples, window_pixels = time.perf_counter(), 0, 0
    while step < config.max_steps:
        micro_batches = [next(batches) for _ in range(config.gradient_accumulation_steps)]
        result = train_step(
            model, micro_batches, ctx, optimizer, scheduler, accelerator, config.grad_clip, reducer
        )
        step += 1
        window_samples, window_pixels = window_samples + result.samples, window_pixels + result.pixels
        elapsed = time.perf_counter() - window_start
        progress.update(1)
        progress.set_postfix(
            loss=f"{result.loss:.4f}",
            scenes_s=f"{window_samples / elapsed:.2f}",
            px_s=f"{window_pixels / elapsed:.3g}",
        )
        if step % config.log_every == 0 or step == config.max_steps:
            peaks = gather_objects(round(peak_memory_bytes(accelerator.device) / 2**20, 1))
            log.write(
                "train",
                step,
                loss=result.loss,
                learning_rate=result.learning_rate,
                grad_norm=result.grad_norm,
                scenes_per_s=window_samples / elapsed,
                pixels_per_s=window_pixels / elapsed,
                peak_memory_mb=max(peaks),
                peak_memory_mb_per_process=peaks,
            )
            window_start, window_samples, window_pixels = time.perf_counter(), 0, 0

        last_step = step == config.max_steps
        if val_loader is not None and ((config.eval_every and step % config.eval_every == 0) or last_step):
            metrics = evaluate(
                model, val_loader, info.num_labels, info.ignore_index, accelerator, info.id2label
            )
            set_train_mode(model, frozen)
            last_eval = metrics_to_json(metrics, info.id2label)
            log.write("eval", step, **last_eval)
            if is_main:
                progress.write(
                    f"step {step}: validation mIoU {100 * metrics['mean_iou']:.2f}\n"
                    + format_table(metrics, info.id2label)
                )
            if best["mean_iou"] is None or metrics["mean_iou"] > best["mean_iou"]:
                best = {"mean_iou": metrics["mean_iou"], "step": step}
                save_model_folder(
                    output_dir / "best",
                    model,
                    processor,
                    info,
                    _notes(config, step, "best validation mIoU"),
                    last_eval,
                    config.val_split or "val",
                    config.backbone_init or config.init_from,
                )
        if (config.save_every and step % config.save_every == 0) or last_step:
            state = {
                "sampler": SceneSampler.state_after(micro_batches[-1]),
                "best": best,
                "last_eval": last_eval,
            }
            folder = save_training_state(
                accelerator, output_dir, step, state, needed, config.keep_checkpoints
            )
            log.write("checkpoint", step, path=str(folder))
    progress.close()

    # --------------------------------------------------------------------------------------- final model
    save_model_folder(
        output_dir / "final",
        model,
        processor,
        info,
        _notes(config, step, "final"),
        last_eval,
        config.val_split or "val",
        config.backbone_init or config.init_from,
    )
    log.write(
        "end", step, best_mean_iou=best["mean_iou"], best_step=best["step"], final=str(output_dir / "final")
    )
    log.close()
    accelerator.end_training()


def _notes(config: TrainConfig, step: int, which: str) -> str:
    start = f"fine-tuned from `{config.init_from}`" if config.init_from else f"started from `{config.model}`"
    return (
        f"Trained with rest_hf's `scripts/train.py` ({which} weights, step {step} of {config.max_steps}), {start}, "
        f"on `{config.dataset}` ({config.layout} layout): crop {config.crop_size or 'whole scenes'}, batch "
        f"{config.batch_size} per group, grid {config.grid}, AdamW lr {config.learning_rate:g}."
    )


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:
        # Up-front checks raise the same message on every process: print it once.
        if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
            print(f"train.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    except UnreadableSceneError as error:
        # Only the processes that read the scene know: each says it, and exits at once (the others wait in a
        # collective until the launcher stops them, or their timeout).
        exit_alone(str(error), "train.py")
