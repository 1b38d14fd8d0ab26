"""Evaluate a trained MAPPO policy, then render one of its episodes to a video.

The policy comes from the newest checkpoint of a run directory: one you give
(``--run-dir``, e.g. written by ``mappo train``), or a short run trained here.
It is evaluated with the library's ``Evaluation`` (N whole episodes side by side,
deterministic, seeded), and one more episode is rendered to mp4 (gif without
imageio-ffmpeg) if VMAS can render on this machine; if it cannot, the script
says why and skips only the video.

    python examples/evaluate_and_render.py                      # train 60k frames first
    python examples/evaluate_and_render.py --run-dir runs/nav   # a run of mappo train
    xvfb-run -a python examples/evaluate_and_render.py          # no display and no EGL
    python examples/evaluate_and_render.py --smoke              # a few seconds, as CI runs it
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from mappo_torchrl.cli.eval import format_table
from mappo_torchrl.config import RunConfig, from_saved_dict
from mappo_torchrl.envs import make_env_from_config
from mappo_torchrl.runs.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_trainer_state,
)
from mappo_torchrl.runs.directory import RunDir, default_run_dir
from mappo_torchrl.runs.evaluation import Evaluation
from mappo_torchrl.runs.session import TrainingSession
from mappo_torchrl.training import Trainer
from mappo_torchrl.viz.video import VideoUnavailable, add_renderer, video_format, write_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--run-dir", help="evaluate this run instead of training one")
    parser.add_argument("--frames", type=int, default=60_000, help="frames to train first")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes")
    parser.add_argument("--video", default="episode.mp4", help="where to write the video")
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for CI")
    args = parser.parse_args()
    torch.set_num_threads(1)

    # -- a run directory: given, or trained here --------------------------------
    run_path = args.run_dir
    if run_path is None:
        config = RunConfig()  # the defaults learn navigation with 3 agents
        config.collector.total_frames = args.frames
        if args.smoke:
            config.env.num_envs, config.env.max_steps = 4, 10
            config.collector.frames_per_batch, config.collector.total_frames = 40, 80
            config.optim.minibatch_size, config.eval.episodes = 20, 4
        run_dir = RunDir.create(default_run_dir(config), config)
        TrainingSession(Trainer(config), run_dir).train(progress=not args.smoke)
        run_path = run_dir.path

    # -- load the newest checkpoint into a trainer built from its config ----------
    checkpoint = latest_checkpoint(run_path)
    state = load_checkpoint(checkpoint)
    config = from_saved_dict(state["config"])
    trainer = Trainer(config)
    load_trainer_state(trainer, state)
    print(f"policy: {checkpoint} (iteration {trainer.iteration}, {trainer.frames} frames)")

    # -- evaluate: whole episodes side by side, the run's evaluation seed --------
    def make_eval_env(num_envs: int, seed: int):
        env_config = dataclasses.replace(config.env, num_envs=num_envs)
        return make_env_from_config(dataclasses.replace(config, env=env_config), seed=seed)

    episodes = 4 if args.smoke else args.episodes
    evaluation = Evaluation(
        make_eval_env,
        trainer.policy,
        episodes=episodes,
        max_steps=config.env.max_steps,
        seed=config.eval.seed,
    )
    results = evaluation.run()
    evaluation.close()
    print(f"evaluation: {episodes} deterministic episodes, seed {config.eval.seed}")
    print(format_table(results))

    # -- render one episode, if VMAS can render here -----------------------------
    def make_video_env(num_envs: int, seed: int):
        return add_renderer(make_eval_env(num_envs, seed))  # records "pixels"

    rendering = Evaluation(
        make_video_env,
        trainer.policy,
        episodes=1,
        max_steps=config.env.max_steps,
        seed=config.eval.seed,
    )
    try:
        video_format(args.video)  # an encoder is installed
        frames = rendering.run().frames
    except VideoUnavailable as err:
        print(f"no video: {err}")
        return
    finally:
        rendering.close()
    path = write_video(args.video, frames)
    print(f"video: {path} ({len(frames)} frames)")


if __name__ == "__main__":
    main()
