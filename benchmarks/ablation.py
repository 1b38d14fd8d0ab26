"""Ablation of MAPPO's implementation details on VMAS, at a fixed frame budget and seed set.

Each variant flips one switch of the base config (the library defaults, or a
``--preset``) and trains every scenario with every seed. The table reports the
final return (mean of the last 3 iterations of each run) as mean ± std over
seeds, and the difference to the base config.

    python benchmarks/ablation.py                                  # navigation + balance
    python benchmarks/ablation.py --frames 60000 --seeds 0 --variants base value_norm
    python benchmarks/ablation.py --out benchmarks/results/ablation.md   # + .json and .png
    python benchmarks/ablation.py --replot benchmarks/results/ablation.json  # figure only
    python benchmarks/ablation.py --workers 2 --out ...   # two runs at a time

Runs use one torch thread each (``threads`` and ``update_threads``), so results do
not depend on the machine's load; ``--workers N`` runs N of them at a time in
worker processes. With ``--out``, each finished run is appended to
``OUT.runs.jsonl`` and a rerun of the same command skips the runs found there,
so an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from mappo_torchrl.config import RunConfig, apply_overrides, apply_preset
from mappo_torchrl.training import Trainer

#: Variant name -> (what it changes, the overrides that flip it).
VARIANTS: dict[str, tuple[str, dict]] = {
    "base": ("the base config", {}),
    "value_norm": ("PopArt value normalisation on", {"loss.value_norm": "popart"}),
    "huber": ("Huber critic loss, delta 10", {"loss.critic_loss": "huber"}),
    "clip_value": ("clipped value loss on", {"loss.clip_value": True}),
    "no_adv_norm": ("advantage normalisation off", {"loss.advantage_norm": "none"}),
    "joint_adv_norm": (
        "advantages standardised over all agents together",
        {"loss.advantage_norm": "joint"},
    ),
    "critic_agent_id": ("agent id in the critic input", {"model.critic_agent_id": True}),
    "paper_critic": (
        "value norm + Huber + clipped value loss",
        {"loss.value_norm": "popart", "loss.critic_loss": "huber", "loss.clip_value": True},
    ),
    "normal_policy": (
        "Gaussian policy, state-independent std",
        {"model.action_dist": "normal"},
    ),
    "orthogonal": ("orthogonal init on", {"model.orthogonal_init": True}),
    "feature_norm": ("input LayerNorm on", {"model.feature_norm": True}),
    "lr_decay": ("linear learning-rate decay on", {"optim.lr_decay": True}),
    "ippo": ("decentralised critic (IPPO)", {"model.centralized_critic": False}),
    "no_sharing": ("one network per agent", {"model.share_params": False}),
    "time_limit_terminal": (
        "time limit treated as terminal (VMAS's own)",
        {"env.truncate_at_max_steps": False},
    ),
}


def run_one(
    scenario: str, seed: int, frames: int, preset: str | None, base: dict, overrides: dict
) -> float:
    config = apply_preset(RunConfig(), preset) if preset else RunConfig()
    config = apply_overrides(
        config,
        {
            "env.scenario": scenario,
            "seed": seed,
            "threads": 1,
            "update_threads": 1,
            "collector.total_frames": frames,
            **base,
            **overrides,
        },
    )
    history = Trainer(config).train(progress=False)
    return statistics.fmean(m["train/episode_return"] for m in history[-3:])


def format_table(results: dict, scenarios: list[str], variants: list[str]) -> str:
    head = "| variant | what changes | " + " | ".join(scenarios) + " |"
    rule = "|---|---|" + "---|" * len(scenarios)
    rows = [head, rule]
    for variant in variants:
        cells = []
        for scenario in scenarios:
            values = results[scenario][variant]
            mean = statistics.fmean(values)
            std = statistics.pstdev(values) if len(values) > 1 else 0.0
            cell = f"{mean:.3f} ± {std:.3f}"
            if variant != "base" and "base" in results[scenario]:
                cell += f" ({mean - statistics.fmean(results[scenario]['base']):+.3f})"
            cells.append(cell)
        rows.append(f"| {variant} | {VARIANTS[variant][0]} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot_results(results: dict, path: Path) -> Path:
    """One panel per scenario: each variant's seeds as dots, their mean ± std as a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(results)
    variants = list(next(iter(results.values())))
    fig, axes = plt.subplots(
        1, len(scenarios), figsize=(4.5 * len(scenarios), 0.45 * len(variants) + 1.2), sharey=True
    )
    axes = [axes] if len(scenarios) == 1 else list(axes)
    rows = range(len(variants))
    for ax, scenario in zip(axes, scenarios, strict=True):
        values = [results[scenario][v] for v in variants]
        means = [statistics.fmean(v) for v in values]
        stds = [statistics.pstdev(v) for v in values]
        ax.errorbar(means, rows, xerr=stds, fmt="s", color="#1f4e79", capsize=3, label="mean ± std")
        for row, seeds in zip(rows, values, strict=True):
            ax.plot(seeds, [row] * len(seeds), "o", color="#9bb7d4", markersize=4)
        ax.grid(axis="x", alpha=0.3)
        if "base" in results[scenario]:
            ax.axvline(statistics.fmean(results[scenario]["base"]), color="grey", ls="--", lw=1)
        ax.set_title(scenario)
        ax.set_xlabel("final episode return")
    axes[0].set_yticks(list(rows), variants)
    axes[0].invert_yaxis()
    axes[0].legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--scenarios", nargs="+", default=["navigation", "balance"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--frames", type=int, default=120_000, help="frames per run")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--preset", default=None, help="base preset (default: library defaults)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the base config of every run, e.g. env.num_envs=30",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="also write the table here (+ .json, .png)"
    )
    parser.add_argument(
        "--replot", type=Path, default=None, help="only redraw the figure of a saved .json"
    )
    parser.add_argument("--workers", type=int, default=1, help="runs at a time (one core each)")
    args = parser.parse_args()
    if args.replot:
        print(plot_results(json.loads(args.replot.read_text()), args.replot.with_suffix(".png")))
        return

    base = dict(item.split("=", 1) for item in args.set)
    runs = [(s, v, seed) for s in args.scenarios for v in args.variants for seed in args.seeds]
    cache = args.out.with_suffix(".runs.jsonl") if args.out else None
    done = _read_cache(cache, args.frames, args.preset, base)
    results: dict[str, dict[str, list[float]]] = {s: {} for s in args.scenarios}
    start = time.perf_counter()
    todo = [run for run in runs if run not in done]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = {
            pool.submit(run_one, s, seed, args.frames, args.preset, base, VARIANTS[v][1]): (
                s,
                v,
                seed,
            )
            for s, v, seed in todo
        }
        for future in tqdm(as_completed(futures), total=len(futures), desc="ablation", unit="run"):
            run = futures[future]
            done[run] = future.result()
            if cache:
                record = dict(zip(("scenario", "variant", "seed"), run, strict=True))
                record.update(value=done[run], frames=args.frames, preset=args.preset, base=base)
                with cache.open("a") as f:
                    f.write(json.dumps(record) + "\n")
    for scenario, variant, seed in runs:
        results[scenario].setdefault(variant, []).append(done[(scenario, variant, seed)])
    minutes = (time.perf_counter() - start) / 60

    table = format_table(results, args.scenarios, args.variants)
    command = "python benchmarks/ablation.py " + " ".join(
        [
            f"--scenarios {' '.join(args.scenarios)}",
            f"--seeds {' '.join(map(str, args.seeds))}",
            f"--frames {args.frames}",
        ]
        + ([f"--variants {' '.join(args.variants)}"] if args.variants != list(VARIANTS) else [])
        + ([f"--preset {args.preset}"] if args.preset else [])
        + [f"--set {item}" for item in args.set]
    )
    report = (
        f"Final return (mean of the last 3 iterations), mean ± std over seeds "
        f"{args.seeds}, {args.frames} frames per run, difference to base in brackets.\n\n"
        f"{table}\n\nCommand: `{command}` ({len(runs)} runs, {minutes:.0f} min)\n"
    )
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
        plot_results(results, args.out.with_suffix(".png"))


def _read_cache(
    cache: Path | None, frames: int, preset: str | None, base: dict
) -> dict[tuple[str, str, int], float]:
    """Finished runs of an earlier invocation with the same budget, preset and base."""
    if cache is None or not cache.exists():
        return {}
    done = {}
    for line in cache.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if (record["frames"], record["preset"], record["base"]) == (frames, preset, base):
            done[(record["scenario"], record["variant"], record["seed"])] = record["value"]
    return done


if __name__ == "__main__":
    main()
