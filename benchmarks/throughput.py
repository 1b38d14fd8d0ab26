"""Throughput of mappo_torchrl against a plain TorchRL tutorial-style pipeline, same settings.

Every measurement runs in a fresh subprocess (so threads, caches and peak
memory are per pipeline), one after the other in this one invocation, with
the same hyper-parameters, seed and device. The pipelines alternate
``--repeats`` times and each one's median run is reported. Printed per setting: end-to-end
frames/s, collection frames/s, milliseconds per gradient step, peak host
memory (and peak device memory on GPU), and the ratio to the baseline: the fastest
tutorial run when ``--tutorial-threads`` names several thread counts.
A scaling table over num_envs follows, with the simulator alone (random
actions through torchrl's VmasEnv) for reference.

    python benchmarks/throughput.py                         # CPU, tutorial settings
    python benchmarks/throughput.py --tutorial-threads 1 2  # baseline at 1 and 2 threads
    python benchmarks/throughput.py --device cuda --settings benchmarl large \
        --scaling 60 600 6000 30000
    python benchmarks/throughput.py --ours-flag perf.compile_update=true   # try a fast-path switch
    python benchmarks/throughput.py --recurrent gru --scaling  # GRU vs feed-forward, same settings
    python benchmarks/throughput.py --settings tutorial tutorial600 --tutorial-threads 2 \
        --arm collector.overlap=on     # collection overlapped with the update, as its own row

The first iteration of every run (compilation, allocator warm-up) is excluded
from the rates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent

#: Named settings: env size, batch, epochs x minibatch, iterations to time.
SETTINGS = {
    "tutorial": {
        "num_envs": 60,
        "frames_per_batch": 6_000,
        "num_epochs": 4,
        "minibatch_size": 400,
        "iterations": 6,
    },
    "tutorial600": {  # the tutorial's settings with ten times the envs (and batch)
        "num_envs": 600,
        "frames_per_batch": 60_000,
        "num_epochs": 4,
        "minibatch_size": 6_000,
        "iterations": 4,
    },
    "benchmarl": {
        "num_envs": 600,
        "frames_per_batch": 60_000,
        "num_epochs": 45,
        "minibatch_size": 4096,
        "iterations": 4,
    },
    "smoke": {  # seconds: only checks that the script runs (CI)
        "num_envs": 4,
        "frames_per_batch": 400,
        "num_epochs": 1,
        "minibatch_size": 100,
        "iterations": 2,
    },
    "large": {
        "num_envs": 6_000,
        "frames_per_batch": 600_000,
        "num_epochs": 4,
        "minibatch_size": 60_000,
        "iterations": 4,
    },
}


# -- the three measured programs (each runs in its own subprocess) ------------------------


def measure_ours(setting: dict, device: str, threads: int, flags: list[str]) -> dict:
    from mappo_torchrl.config import RunConfig, apply_overrides, apply_preset
    from mappo_torchrl.training import Trainer

    iterations = setting["iterations"]
    config = apply_overrides(
        apply_preset(RunConfig(), "tutorial"),
        {
            "env.num_envs": setting["num_envs"],
            "collector.frames_per_batch": setting["frames_per_batch"],
            "collector.total_frames": setting["frames_per_batch"] * iterations,
            "optim.num_epochs": setting["num_epochs"],
            "optim.minibatch_size": setting["minibatch_size"],
            "device": device,
            "threads": threads,
            **dict(flag.split("=", 1) for flag in flags),
        },
    )
    clock = CoreClock()
    history = Trainer(config).train(progress=False, callbacks=[lambda metrics: clock.tick()])
    rows = [
        {
            "frames": setting["frames_per_batch"],
            "collect_s": m["time/collect_s"],
            "update_s": m["time/update_s"],
            "episode_return": m["train/episode_return"],
        }
        for m in history
    ]
    return summarise(rows, setting, device) | clock.idle()


def measure_tutorial(setting: dict, device: str, threads: int) -> dict:
    sys.path.insert(0, str(HERE))
    from tutorial_pipeline import TutorialSettings, run_tutorial_pipeline

    torch.set_num_threads(threads)
    iterations = setting["iterations"]
    settings = TutorialSettings(
        num_envs=setting["num_envs"],
        frames_per_batch=setting["frames_per_batch"],
        total_frames=setting["frames_per_batch"] * iterations,
        num_epochs=setting["num_epochs"],
        minibatch_size=setting["minibatch_size"],
        device=device,
    )
    clock = CoreClock()
    rows = run_tutorial_pipeline(settings, callback=lambda row, policy: clock.tick())
    return summarise(rows, setting, device) | clock.idle()


def measure_simulator(setting: dict, device: str, threads: int) -> dict:
    from torchrl.envs.libs.vmas import VmasEnv

    torch.set_num_threads(threads)
    env = VmasEnv(
        "navigation", num_envs=setting["num_envs"], device=device, max_steps=100, n_agents=3, seed=0
    )
    steps = max(setting["frames_per_batch"] // setting["num_envs"], 100)
    td = env.reset()
    with torch.no_grad():
        for _ in range(10):  # warm-up
            td = env.step_mdp(env.rand_step(td))
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            td = env.step_mdp(env.rand_step(td))
        synchronize(device)
        seconds = time.perf_counter() - start
    fps = steps * setting["num_envs"] / seconds
    return {"fps": fps, "collect_fps": fps, **peak_memory(device)}


# -- helpers -----------------------------------------------------------------------------


class CoreClock:
    """Each core's idle share between the end of the first iteration and the last one.

    Read from /proc/stat (Linux), so it counts the whole machine: measure on a
    quiet one. Elsewhere it reports nothing.
    """

    def __init__(self) -> None:
        self.first: list[tuple[int, int]] | None = None
        self.last: list[tuple[int, int]] | None = None

    def tick(self) -> None:
        now = _cpu_times()
        if self.first is None:
            self.first = now
        self.last = now

    def idle(self) -> dict:
        if not self.first or self.first is self.last:
            return {}
        shares = []
        for (idle0, total0), (idle1, total1) in zip(self.first, self.last, strict=True):
            shares.append((idle1 - idle0) / max(total1 - total0, 1))
        return {"idle_per_core": shares}


def _cpu_times() -> list[tuple[int, int]]:
    """``(idle, total)`` jiffies of each core, from /proc/stat (empty if unreadable)."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            values = [int(v) for v in fields]
            out.append((values[3] + values[4], sum(values[:8])))  # idle + iowait
    return out


def summarise(rows: list[dict], setting: dict, device: str) -> dict:
    timed = rows[1:] if len(rows) > 1 else rows  # drop the warm-up iteration
    frames = sum(r["frames"] for r in timed)
    collect = sum(r["collect_s"] for r in timed)
    update = sum(r["update_s"] for r in timed)
    steps_per_iter = setting["num_epochs"] * (
        setting["frames_per_batch"] // setting["minibatch_size"]
    )
    return {
        "fps": frames / (collect + update),
        "collect_fps": frames / collect,
        "ms_per_step": 1000 * update / (steps_per_iter * len(timed)),
        "update_share": update / (collect + update),
        "iteration_s": (collect + update) / len(timed),
        "final_return": rows[-1]["episode_return"],
        **peak_memory(device),
    }


def median_run(results: list[dict]) -> dict:
    """The run with the median end-to-end frames/s."""
    return sorted(results, key=lambda r: r["fps"])[len(results) // 2]


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory(device: str) -> dict:
    # ru_maxrss is in KiB on Linux.
    out = {"peak_host_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.startswith("cuda"):
        out["peak_device_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_child(
    kind: str,
    setting_name: str,
    setting: dict,
    args,
    *,
    threads: int | None = None,
    flags: tuple[str, ...] = (),
) -> dict:
    """Run one measurement in a fresh interpreter and return its JSON result."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--child-setting",
        json.dumps(setting),
        "--device",
        args.device,
        "--threads",
        str(args.threads if threads is None else threads),
    ]
    for flag in [*args.ours_flag, *flags]:
        cmd += ["--ours-flag", flag]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        raise SystemExit(f"{kind} on {setting_name} failed: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def collect_text(result: dict) -> str:
    """Collection frames/s, or how long the update waited for an overlapped batch."""
    if result["update_share"] > 0.95:  # collected in a worker while the update ran
        wait_ms = 1000 * (1 - result["update_share"]) * result["iteration_s"]
        return f"overlapped (waits {wait_ms:.0f} ms/iteration)"
    return fmt(result, "collect_fps")


def idle_text(result: dict) -> str:
    shares = result.get("idle_per_core")
    return " / ".join(f"{share:.0%}" for share in shares) if shares else "-"


def fmt(result: dict, key: str, digits: int = 0) -> str:
    value = result.get(key)
    return "-" if value is None else f"{value:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    parser.add_argument(
        "--tutorial-threads",
        nargs="+",
        type=int,
        default=None,
        help="run the tutorial baseline at each of these thread counts (default: --threads)",
    )
    parser.add_argument("--settings", nargs="+", default=["tutorial"], choices=list(SETTINGS))
    parser.add_argument("--iterations", type=int, default=None, help="override timed iterations")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each pipeline, alternating; the median run is shown",
    )
    parser.add_argument(
        "--scaling",
        nargs="*",
        type=int,
        default=[60, 600, 6000],
        help="num_envs values for the scaling table (none: skip it)",
    )
    parser.add_argument(
        "--ours-flag",
        action="append",
        default=[],
        help="extra config override for mappo_torchrl, e.g. perf.shifted_gae=true",
    )
    parser.add_argument(
        "--recurrent",
        nargs="*",
        choices=["gru", "lstm"],
        default=[],
        help="also time mappo_torchrl with these recurrent models (model.recurrent), same "
        "settings, trained on chunks of optim.chunk_length",
    )
    parser.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also time mappo_torchrl with this option changed, as its own row, e.g. "
        "collector.overlap=on (repeatable)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-setting", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        setting = json.loads(args.child_setting)
        if args.child == "ours":
            result = measure_ours(setting, args.device, args.threads, args.ours_flag)
        elif args.child == "tutorial":
            result = measure_tutorial(setting, args.device, args.threads)
        else:
            result = measure_simulator(setting, args.device, args.threads)
        print(json.dumps(result))
        return

    import tensordict
    import torchrl
    import vmas

    card = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    print(
        f"# throughput on {args.device} ({card or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} thread(s)); torch {torch.__version__}, torchrl {torchrl.__version__}, "
        f"tensordict {tensordict.__version__}, vmas {vmas.__version__}"
    )
    print(
        "# mappo_torchrl collects with the same threads and updates with its update_threads "
        "(default 2, at most one per core) unless --ours-flag says otherwise"
    )
    print(f"# command: python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}\n")
    header = (
        "| setting | pipeline | frames/s | collection frames/s | ms/step | update share "
        "| idle per core | peak host MiB | peak device MiB | final return | ratio |"
    )
    print(header)
    print("|---" * 11 + "|")
    for name in args.settings:
        setting = dict(SETTINGS[name])
        if args.iterations:
            setting["iterations"] = args.iterations
        # Alternate the pipelines and keep each one's median run: a shared
        # machine's load drifts, and VMAS's partial resets vary with the policy.
        tutorial_threads = args.tutorial_threads or [args.threads]
        runs: dict[str, list[dict]] = {}
        for _ in range(args.repeats):
            for threads in tutorial_threads:
                label = f"tutorial-style TorchRL, {threads} thread(s)"
                runs.setdefault(label, []).append(
                    run_child("tutorial", name, setting, args, threads=threads)
                )
            runs.setdefault("mappo_torchrl", []).append(run_child("ours", name, setting, args))
            for kind in args.recurrent:
                runs.setdefault(f"mappo_torchrl, {kind}", []).append(
                    run_child("ours", name, setting, args, flags=(f"model.recurrent={kind}",))
                )
            for flag in args.arm:
                runs.setdefault(f"mappo_torchrl, {flag}", []).append(
                    run_child("ours", name, setting, args, flags=(flag,))
                )
        medians = {label: median_run(results) for label, results in runs.items()}
        base = max(
            (r for label, r in medians.items() if not label.startswith("mappo_torchrl")),
            key=lambda r: r["fps"],
        )
        for label, result in medians.items():
            ratio = result["fps"] / base["fps"]
            print(
                f"| {name} | {label} | {fmt(result, 'fps')} | {collect_text(result)} | "
                f"{fmt(result, 'ms_per_step', 2)} | {result['update_share']:.0%} | "
                f"{idle_text(result)} | {fmt(result, 'peak_host_mib')} | "
                f"{fmt(result, 'peak_device_mib')} | "
                f"{result['final_return']:.3f} | {ratio:.2f}x |"
            )
    if args.scaling:
        print(
            "\n| num_envs | mappo_torchrl frames/s | collection frames/s | ms/step "
            "| simulator alone frames/s | ours / simulator | peak device MiB |"
        )
        print("|---" * 7 + "|")
        for num_envs in args.scaling:
            setting = {
                "num_envs": num_envs,
                "frames_per_batch": num_envs * 100,
                "num_epochs": 4,
                "minibatch_size": num_envs * 10,
                "iterations": args.iterations or 3,
            }
            ours = run_child("ours", f"{num_envs} envs", setting, args)
            sim = run_child("simulator", f"{num_envs} envs", setting, args)
            print(
                f"| {num_envs:,} | {fmt(ours, 'fps')} | {fmt(ours, 'collect_fps')} | "
                f"{fmt(ours, 'ms_per_step', 2)} | {fmt(sim, 'fps')} | "
                f"{ours['fps'] / sim['fps']:.0%} | {fmt(ours, 'peak_device_mib')} |"
            )


if __name__ == "__main__":
    main()
