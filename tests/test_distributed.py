"""The distributed home: the only caller of torch.distributed collectives (with spatial/comm*), groups that
carry the job's timeout, and a spatial package without import circles."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rest_hf import distributed
from rest_hf.spatial import SpatialContext
from rest_hf.spatial.comm_alltoall import gather_ints
from tests.multiprocess import run_in_processes

ROOT = Path(__file__).resolve().parents[1]
COLLECTIVES = {
    "all_gather",
    "all_gather_into_tensor",
    "all_gather_object",
    "all_reduce",
    "all_to_all",
    "all_to_all_single",
    "barrier",
    "batch_isend_irecv",
    "broadcast",
    "broadcast_object_list",
    "gather",
    "gather_object",
    "irecv",
    "isend",
    "monitored_barrier",
    "new_group",
    "new_subgroups",
    "recv",
    "reduce",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "scatter",
    "scatter_object_list",
    "send",
}


def _is_allowed(path: Path) -> bool:
    relative = path.relative_to(ROOT).as_posix()
    return relative == "rest_hf/distributed.py" or (
        relative.startswith("rest_hf/spatial/comm") and relative.endswith(".py")
    )


def _collective_calls(path: Path) -> list[str]:
    """`name` of every call of a torch.distributed collective in a source file, with its line."""
    tree = ast.parse(path.read_text(), str(path))
    aliases: set[str] = set()  # names bound to the torch.distributed module
    direct: set[str] = set()  # collectives imported by name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "torch.distributed" and alias.asname:
                    aliases.add(alias.asname)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if node.module == "torch" and alias.name == "distributed":
                    aliases.add(alias.asname or "distributed")
                elif (
                    node.module and node.module.startswith("torch.distributed") and alias.name in COLLECTIVES
                ):
                    direct.add(alias.asname or alias.name)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in direct:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {func.id}")
        elif isinstance(func, ast.Attribute) and func.attr in COLLECTIVES:
            owner = ast.unparse(func.value)
            if owner in aliases or owner == "torch.distributed":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {owner}.{func.attr}")
    return found


def test_only_the_distributed_home_and_spatial_comm_call_collectives():
    sources = sorted([*ROOT.joinpath("rest_hf").rglob("*.py"), *ROOT.joinpath("scripts").rglob("*.py")])
    assert len(sources) > 50
    offending = [call for path in sources if not _is_allowed(path) for call in _collective_calls(path)]
    assert offending == [], "collectives outside rest_hf/distributed.py and rest_hf/spatial/comm*.py"
    # The walk does find them where they are allowed.
    assert _collective_calls(ROOT / "rest_hf" / "distributed.py")
    assert _collective_calls(ROOT / "rest_hf" / "spatial" / "comm_alltoall.py")


def _runtime_imports(path: Path) -> set[str]:
    """Sibling modules of rest_hf/spatial that `path` imports when it is imported (not under TYPE_CHECKING, not
    inside functions), relatively or by their absolute names."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    package = "rest_hf.spatial"
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and (module == package or module.startswith(package + ".")):
                module, level = module[len(package) + 1 :], 1
            else:
                level = node.level
            if level == 1:
                found.update([module.split(".")[0]] if module else [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            names = (alias.name for alias in node.names)
            found.update(name.split(".")[2] for name in names if name.startswith(package + "."))
    return found


def test_spatial_modules_import_alone_and_form_no_circle():
    spatial = ROOT / "rest_hf" / "spatial"
    modules = sorted(p.stem for p in spatial.glob("*.py") if p.stem != "__init__")
    graph = {m: _runtime_imports(spatial / f"{m}.py") & set(modules) for m in modules}
    assert graph["partition"] == set(), "partition.py is pure arithmetic: it imports no other spatial module"
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", f"import circle: {' -> '.join([*trail, module])}"
        state[module] = "open"
        for imported in sorted(graph[module]):
            visit(imported, [*trail, module])
        state[module] = "done"

    for module in modules:
        visit(module, [])
    # Each module imports (after the package's __init__, as Python always runs it first), with no other
    # rest_hf module loaded before: forgetting every rest_hf module between imports gives the state of a fresh
    # interpreter for them (a fresh interpreter per module would import torch and transformers again, 6 s
    # each, seventeen times). The circles themselves are the graph's business, above.
    code = textwrap.dedent(
        f"""
        import importlib, sys
        for module in {modules!r}:
            for name in [name for name in sys.modules if name == "rest_hf" or name.startswith("rest_hf.")]:
                del sys.modules[name]
            try:
                importlib.import_module("rest_hf.spatial." + module)
            except ImportError as error:
                sys.exit(f"rest_hf.spatial.{{module}} does not import alone: {{error}}")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr


def _check_group_timeouts(rank: int, world_size: int) -> None:
    ctx = SpatialContext.init(grid=(1, 2), timeout=timedelta(seconds=7))
    assert distributed.group_timeout(ctx.dp_group) == timedelta(seconds=7)
    assert distributed.group_timeout(ctx.group) == timedelta(seconds=7)
    inherited = SpatialContext.init(grid=(1, 2))
    assert distributed.group_timeout(inherited.group) == distributed.group_timeout() == timedelta(seconds=180)
    assert ctx.device == ctx.metadata_device == torch.device("cpu")


def test_every_group_gets_a_timeout():
    run_in_processes(_check_group_timeouts, 4)


def _stopped_peer(rank: int, store: str, timeout_s: float, report: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=2, timeout=timedelta(seconds=timeout_s)
    )
    ctx = SpatialContext.init(grid=(1, 2))  # the spatial group inherits the timeout
    dist.barrier()
    if rank == 1:
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    time.sleep(0.5)  # the peer is stopped by now
    started = time.monotonic()
    try:
        gather_ints([1, 2], ctx)
        outcome = "no error"
    except RuntimeError as error:
        outcome = distributed.one_line(error)
    Path(report).write_text(f"{time.monotonic() - started}\n{outcome}")
    os._exit(0)  # the peer never answers: leave without the group's shutdown handshake


def test_a_stopped_rank_makes_the_others_fail_within_the_timeout(tmp_path):
    timeout_s = 3.0
    report = tmp_path / "rank0.txt"
    context = mp.start_processes(
        _stopped_peer,
        args=(str(tmp_path / "store"), timeout_s, str(report)),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    try:
        deadline = time.monotonic() + 120
        while not report.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert report.exists(), "rank 0 still waits for the stopped rank"
        seconds, message = report.read_text().split("\n", 1)
        assert float(seconds) < timeout_s + 10, f"rank 0 gave up only after {seconds} s"
        assert message != "no error" and "\n" not in message
    finally:
        for process in context.processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGKILL)
            process.join(10)


@pytest.mark.parametrize("config", ["gloo", "cpu:gloo,cuda:nccl"])
def test_metadata_travels_on_the_cpu_when_the_group_has_gloo(monkeypatch, config):
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(dist, "get_backend_config", lambda group=None: config)
    assert distributed.metadata_device() == torch.device("cpu")


def test_metadata_travels_on_the_gpu_in_an_nccl_only_group(monkeypatch):
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(dist, "get_backend_config", lambda group=None: "cuda:nccl")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert distributed.metadata_device() == distributed.communication_device() == torch.device("cuda", 0)
