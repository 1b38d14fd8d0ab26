import importlib.util
import json
import os
import struct
import subprocess
import sysconfig
import time
from pathlib import Path

import pytest
from conftest import render_launcher

from mappo_torchrl.cli.main import main
from mappo_torchrl.config import RunConfig
from mappo_torchrl.runs import loggers
from mappo_torchrl.runs.loggers import hparams

TINY = [
    "--collector.overlap", "off",  # sync: no worker process to start per test
    "--env.num_envs", "4",
    "--env.max_steps", "10",
    "--collector.frames_per_batch", "40",
    "--collector.total_frames", "80",
    "--optim.minibatch_size", "20",
    "--model.actor_cells", "16",
    "--model.critic_cells", "16",
    "--eval.interval", "1",
    "--eval.episodes", "2",
    "--threads", "1",
    "--no-progress",
]  # fmt: skip


def train_with_video(*args: str, **env: str) -> None:
    """``mappo train ... --eval.video_interval 2`` through the console script, in a process
    that can render VMAS (directly or under xvfb-run), or skip where none can."""
    prefix, why_not = render_launcher()
    if prefix is None:
        pytest.skip(why_not)
    mappo = str(Path(sysconfig.get_path("scripts")) / "mappo")
    done = subprocess.run(
        [*prefix, mappo, "train", *args, *TINY, "--eval.video_interval", "2"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true", **env},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _event_dirs(root):
    return sorted({p.parent for p in root.rglob("events.out.tfevents.*")})


def test_tensorboard_event_files_hold_scalars_hparams_and_video(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir = tmp_path / "my-run"
    train_with_video("--run-dir", str(run_dir), "--logger", "tensorboard")
    # The run's name is the run directory's: tensorboard/my-run, hparams in a folder under it.
    scalars_dir, hparams_dir = _event_dirs(run_dir / "tensorboard")
    assert scalars_dir == run_dir / "tensorboard" / "my-run"
    assert hparams_dir.parent == scalars_dir
    events = EventAccumulator(str(scalars_dir), size_guidance={"images": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    for tag in ("train/episode_return", "train/loss_critic", "eval/episode_return", "time/fps"):
        assert tag in scalars, tag
        assert [e.step for e in events.Scalars(tag)] == [40, 80]  # the step is the frame count
    assert "eval/episode_length" in scalars
    # The second evaluation's video, as TensorBoard's animated GIF (Images tab).
    (video,) = events.Images("eval/video")
    assert video.step == 80
    assert (video.width, video.height) == (700, 700)
    assert video.encoded_image_string[:6] == b"GIF89a"
    assert sorted(p.name for p in (run_dir / "videos").iterdir()) == ["eval-iter000002.mp4"]

    hp_events = EventAccumulator(str(hparams_dir))
    hp_events.Reload()
    content = hp_events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    stored = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert stored["env.scenario"].string_value == "navigation"
    assert stored["collector.total_frames"].number_value == 80
    assert stored["loss.gamma"].number_value == pytest.approx(0.9)
    assert stored["logger.backend"].string_value == "tensorboard"
    assert len(stored) == len(hparams(RunConfig()))


def wandb_records(path):
    """The protobuf records of a W&B run file (a LevelDB-style log: 32 KiB blocks of chunks)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a chunk header never straddles a block
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        if kind == 0:  # zero padding at the end of the file
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def finished_wandb_records(offline):
    """The records of an offline run directory, once W&B's service has written its exit record."""
    for _ in range(120):
        records = wandb_records(next(offline.glob("*.wandb")))
        if any(r.HasField("exit") for r in records):
            return records
        time.sleep(0.5)
    raise AssertionError(f"{offline}: no exit record after 60 s")


def test_wandb_offline_run_file_holds_name_project_config_and_video(tmp_path):
    run_dir = tmp_path / "my-run"
    args = ["--run-dir", str(run_dir), "--logger", "wandb", "--logger.project", "tag-study"]
    train_with_video(*args, WANDB_MODE="offline")
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    records = finished_wandb_records(offline)
    (run,) = [r.run for r in records if r.HasField("run")]
    assert (run.display_name, run.project) == ("my-run", "tag-study")
    config = {}
    for record in records:
        if record.HasField("config"):
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
    assert config["env.scenario"] == "navigation"
    assert config["collector.total_frames"] == 80
    assert config["logger.project"] == "tag-study"
    assert len(config) == len(hparams(RunConfig()))
    history = [
        {
            tuple(item.nested_key) or (item.key,): json.loads(item.value_json)
            for item in r.history.item
        }
        for r in records
        if r.HasField("history")
    ]
    assert any(("eval/episode_return",) in row for row in history)
    (video,) = [row for row in history if ("eval/video", "path") in row]
    assert video[("eval/step",)] == 80
    stored = offline / "files" / video[("eval/video", "path")]
    assert stored.suffix == ".mp4" and stored.stat().st_size > 0


def test_mlflow_file_store_holds_params_metrics_run_name_and_video(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # what mappo train sets for itself

    run_dir = tmp_path / "my-run"
    train_with_video(
        "--run-dir", str(run_dir), "--logger", "mlflow", "--logger.project", "tag-study"
    )
    mlflow.set_tracking_uri((run_dir / "mlruns").as_uri())
    (run,) = mlflow.search_runs(experiment_names=["tag-study"], output_format="list")
    assert run.info.run_name == "my-run"
    assert run.data.params["env.scenario"] == "navigation"
    assert run.data.params["collector.total_frames"] == "80"
    assert len(run.data.params) == len(hparams(RunConfig()))
    assert "train/episode_return" in run.data.metrics
    assert "eval/episode_return" in run.data.metrics
    artifacts = mlflow.MlflowClient().list_artifacts(run.info.run_id, "videos")
    assert [a.path for a in artifacts] == ["videos/eval_video-step80.mp4"]


def test_several_backends_at_once_each_get_the_metrics(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "run"
    assert main(["train", "--run-dir", str(run_dir), "--logger", "tensorboard,wandb", *TINY]) == 0
    events = EventAccumulator(str(run_dir / "tensorboard" / "run"))
    events.Reload()
    assert "eval/episode_return" in events.Tags()["scalars"]
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    logged = {
        tuple(item.nested_key)
        for r in finished_wandb_records(offline)
        if r.HasField("history")
        for item in r.history.item
    }
    assert ("eval/episode_return",) in logged


@pytest.mark.parametrize(
    ("environ", "netrc_text", "mode"),
    [
        ({}, None, "offline"),  # no key anywhere: never ask, log offline
        ({"WANDB_API_KEY": "x" * 40}, None, "online"),
        ({}, "machine api.wandb.ai login user password " + "x" * 40, "online"),
        ({}, "machine other.host login user password secret", "offline"),
        ({"WANDB_BASE_URL": "https://wandb.example.org"},
         "machine wandb.example.org login user password secret", "online"),
        ({"WANDB_MODE": "offline", "WANDB_API_KEY": "x" * 40}, None, "offline"),
        ({"WANDB_MODE": "dryrun"}, None, "offline"),
        ({"WANDB_MODE": "online"}, None, "online"),
        ({"WANDB_MODE": "disabled"}, None, "disabled"),
    ],
)  # fmt: skip
def test_wandb_is_online_when_logged_in_or_asked_offline_otherwise(
    tmp_path, environ, netrc_text, mode
):
    netrc_file = tmp_path / "netrc"
    if netrc_text is not None:
        netrc_file.write_text(netrc_text + "\n")
        netrc_file.chmod(0o600)
    assert loggers.wandb_mode({**environ, "NETRC": str(netrc_file)}) == mode


def test_wandb_logger_gets_the_mode_and_leaves_the_environment_alone(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(loggers.WandbLogger, "__init__", lambda self, *a, **kw: seen.update(kw))
    monkeypatch.setattr(loggers, "wandb_mode", lambda: "online")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    config = RunConfig().logger
    config.backend, config.project = "wandb", "tag-study"
    loggers.make_loggers(config, tmp_path, exp_name="my-run")
    assert seen["mode"] == "online" and seen["offline"] is False
    assert (seen["exp_name"], seen["project"]) == ("my-run", "tag-study")
    assert "WANDB_MODE" not in os.environ


@pytest.mark.parametrize("backend", ["tensorboard", "wandb", "mlflow"])
def test_missing_backend_is_one_line_naming_the_extra_before_anything_starts(
    tmp_path, capsys, monkeypatch, backend
):
    module = loggers.BACKEND_PACKAGES[backend][0]
    real = importlib.util.find_spec
    monkeypatch.setattr(
        loggers.importlib.util, "find_spec", lambda name: None if name == module else real(name)
    )
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--run-dir", str(run_dir), "--logger", backend, *TINY])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"logger.backend='{backend}'" in err
    assert f"pip install 'mappo_torchrl[{backend}]'" in err
    assert len(err.strip().splitlines()) == 1
    assert not run_dir.exists()


@pytest.mark.parametrize("backend", ["neptune", "tensorboard,neptune"])
def test_unknown_backend_names_the_choices(tmp_path, capsys, backend):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--run-dir", str(tmp_path / "run"), "--logger", backend, *TINY])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"logger.backend='{backend}'" in err
    assert "must be one of csv, tensorboard, wandb, mlflow, or several joined by commas" in err
    assert not (tmp_path / "run").exists()


def test_every_logged_metric_is_documented_in_docs_metrics_md(tmp_path):
    import re
    from pathlib import Path

    from conftest import tiny_config

    from mappo_torchrl.runs.directory import RunDir
    from mappo_torchrl.runs.session import TrainingSession
    from mappo_torchrl.training import Trainer

    table = (Path(__file__).parents[1] / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", table, flags=re.MULTILINE))
    cfg = tiny_config(env={"scenario": "simple_tag", "max_steps": 5})
    cfg.eval.interval = 1
    history = TrainingSession(Trainer(cfg), RunDir.create(tmp_path / "run", cfg)).train(
        progress=False
    )
    for name in history[-1]:
        # Several groups: train/<group>/x is documented as train/x, eval/<group>/x too.
        general = re.sub(r"^(train|eval/stochastic|eval)/(adversary|agent)/", r"\1/", name)
        assert general in documented, name


def test_online_wandb_without_its_server_is_one_line_before_the_run_starts(
    tmp_path, monkeypatch, capsys
):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    run = tmp_path / "run"
    started = time.monotonic()
    with pytest.raises(SystemExit) as stop:
        main(["train", "--run-dir", str(run), "--logger", "wandb", "--no-progress"])
    assert stop.value.code == 2 and time.monotonic() - started < 30
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"W&B would log online, but 127.0.0.1:{port} cannot be reached" in err
    assert "WANDB_MODE=offline" in err
    assert not run.exists()
    # Offline, nothing is checked: the reachability test never blocks a local run.
    loggers.check_wandb_reachable({"WANDB_MODE": "offline"})
