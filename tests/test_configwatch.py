"""A config edited while running (only the edited keys change, never what a higher layer
set), and a pipeline that keeps failing (process faults)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from deskpulse import settings
from deskpulse.agent import Agent
from deskpulse.config import Config, flatten, load_config, load_layers
from deskpulse.configwatch import ConfigWatcher
from deskpulse.settings import RuntimeConfig, SettingsStore, with_saved
from deskpulse.topics import Topics


def write(path: Path, text: str) -> None:
    path.write_text(text)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a distinct mtime even within one tick


def watch(path: Path, overrides: dict[str, object] | None = None, env: dict[str, str] | None = None,
          store: SettingsStore | None = None) -> tuple[ConfigWatcher, RuntimeConfig, Config]:
    """What the agent's composition root builds: layers, saved settings, the runtime owner, a watcher."""
    layers = load_layers(path, overrides or {}, env or {})
    if store is not None:
        layers = with_saved(layers, store)
    live = RuntimeConfig(layers, store)
    return ConfigWatcher(live, interval_s=0), live, layers.config


def messages(caplog: pytest.LogCaptureFixture, level: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == level and r.name == "deskpulse.configwatch"]


def test_runtime_keys_apply_live_and_others_wait_for_restart(tmp_path: Path, caplog) -> None:
    path = tmp_path / "c.toml"
    write(path, "[alerts]\nbad_posture_minutes = 10\n")
    watcher, _, running = watch(path)
    assert watcher.poll(running) is None  # unchanged
    write(path, "[alerts]\nbad_posture_minutes = 15\n[camera]\nfps = 5\n")
    updated = watcher.poll(running)
    assert updated is not None and updated.alerts.bad_posture_minutes == 15
    assert updated.camera.fps == running.camera.fps  # needs a restart, and says so
    assert any("camera.fps take effect after a restart" in m for m in messages(caplog, "WARNING"))


def test_invalid_edit_keeps_the_running_config_with_one_line_per_problem(tmp_path: Path, caplog) -> None:
    path = tmp_path / "c.toml"
    write(path, "")
    watcher, live, running = watch(path)
    before = live.layers
    write(path, "[alerts]\nbad_posture_minutes = -3\n[camra]\nx = 1\n")
    assert watcher.poll(running) is None
    errors = messages(caplog, "ERROR")
    assert len(errors) == 2
    assert any("alerts.bad_posture_minutes" in e for e in errors) and any("camra: unknown key" in e for e in errors)
    assert live.layers == before  # the invalid file never became a layer
    write(path, "[alerts]\nbad_posture_minutes = 12\n")  # fixed: applies
    fixed = watcher.poll(running)
    assert fixed is not None and fixed.alerts.bad_posture_minutes == 12
    write(path, "[alerts\n")  # not TOML at all: one line too
    assert watcher.poll(fixed) is None
    assert len(messages(caplog, "ERROR")) == 3 and "not valid TOML" in messages(caplog, "ERROR")[-1]


def test_config_set_survives_an_unrelated_file_edit(tmp_path: Path, caplog) -> None:
    path = tmp_path / "c.toml"
    write(path, "[alerts]\nbad_posture_minutes = 10\ncooldown_minutes = 5\n")
    store = SettingsStore(tmp_path / "desk1")
    watcher, live, running = watch(path, store=store)
    running = live.set(running, {"alerts.bad_posture_minutes": 25, "posture.sensitivity": 1.5})
    write(path, "[alerts]\nbad_posture_minutes = 10\ncooldown_minutes = 8\n")  # only cooldown edited
    edited = watcher.poll(running)
    assert edited is not None
    assert (edited.alerts.cooldown_minutes, edited.alerts.bad_posture_minutes, edited.posture.sensitivity) == (8, 25, 1.5)
    assert live.describe()["alerts.bad_posture_minutes"] == {"value": 25, "source": "settings"}
    # ...and after a restart on the same files, the same values.
    _, _, restarted = watch(path, store=store)
    assert (restarted.alerts.cooldown_minutes, restarted.alerts.bad_posture_minutes) == (8, 25)


def test_an_edit_of_a_key_a_higher_layer_sets_changes_nothing_and_says_so(tmp_path: Path, caplog) -> None:
    path = tmp_path / "c.toml"
    write(path, "[alerts]\nbad_posture_minutes = 10\n[posture]\nsensitivity = 1.0\nonset_s = 3\n")
    watcher, live, running = watch(path, env={"DESKPULSE_POSTURE_ONSET_S": "6"}, store=SettingsStore(tmp_path))
    running = live.set(running, {"alerts.bad_posture_minutes": 25})
    write(path, "[alerts]\nbad_posture_minutes = 11\n[posture]\nsensitivity = 1.0\nonset_s = 4\n")
    assert watcher.poll(running) is None
    assert (running.alerts.bad_posture_minutes, running.posture.onset_s) == (25, 6)
    lines = messages(caplog, "WARNING")
    assert any("alerts.bad_posture_minutes stays 25" in m and "config/set" in m for m in lines)
    assert any("posture.onset_s stays 6" in m and "DESKPULSE_POSTURE_ONSET_S" in m for m in lines)
    # Handing the key back to the file (config/set to the file's value) lets the next edit apply.
    running = live.set(running, {"alerts.bad_posture_minutes": 11})
    write(path, "[alerts]\nbad_posture_minutes = 12\n[posture]\nsensitivity = 1.0\nonset_s = 4\n")
    edited = watcher.poll(running)
    assert edited is not None and edited.alerts.bad_posture_minutes == 12


def test_removing_a_key_from_the_file_returns_it_to_the_default(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    write(path, "[alerts]\nrecovery_s = 30\n")
    watcher, _, running = watch(path)
    write(path, "")
    edited = watcher.poll(running)
    assert edited is not None and edited.alerts.recovery_s == Config().alerts.recovery_s


def test_a_watcher_needs_a_file() -> None:
    with pytest.raises(ValueError):
        ConfigWatcher(RuntimeConfig(load_layers(None, {}, {})))


RUNTIME = sorted(settings.RUNTIME_KEYS)
values = st.dictionaries(st.sampled_from(RUNTIME), st.integers(1, 4), max_size=len(RUNTIME))


def toml(layer: dict[str, int]) -> str:
    tables: dict[str, list[str]] = {}
    for key, value in layer.items():
        section, name = key.split(".")
        tables.setdefault(section, []).append(f"{name} = {value}")
    return "".join(f"[{section}]\n" + "\n".join(lines) + "\n" for section, lines in tables.items())


@hsettings(max_examples=100, deadline=None)
@given(before=values, after=values, saved=values, env=values)
def test_after_any_edit_the_running_values_are_the_merge_of_the_new_layers(
        tmp_path_factory: pytest.TempPathFactory, before: dict, after: dict, saved: dict, env: dict) -> None:
    """Edited keys move to the file's new value unless a higher layer sets them; nothing else moves."""
    path = tmp_path_factory.mktemp("edit") / "c.toml"
    env_vars = {"DESKPULSE_" + k.replace(".", "_").upper(): str(v) for k, v in env.items()}
    write(path, toml(before))
    live = RuntimeConfig(load_layers(path, {}, env_vars, saved))
    watcher = ConfigWatcher(live, interval_s=0)
    running = live.layers.config
    write(path, toml(after))
    edited = watcher.poll(running) or running
    expected = load_layers(path, {}, env_vars, saved).config
    assert settings.current(edited) == settings.current(expected)
    others = [{k: v for k, v in flatten(c.model_dump()).items() if k not in settings.RUNTIME_KEYS}
              for c in (edited, running)]
    assert others[0] == others[1]


def test_transitional_constructor_from_a_path_and_flags(tmp_path: Path) -> None:
    # What cli.py calls until it builds a RuntimeConfig: the flags still outrank the file.
    path = tmp_path / "c.toml"
    write(path, 'device_id = "from-file"\n[alerts]\nrecovery_s = 10\n')
    watcher = ConfigWatcher(path, {"device_id": "from-flag"}, interval_s=0)
    running = watcher.runtime.layers.config
    write(path, 'device_id = "edited"\n[alerts]\nrecovery_s = 20\n')
    edited = watcher.poll(running)
    assert edited is not None and (edited.device_id, edited.alerts.recovery_s) == ("from-flag", 20)


class Frames:
    live = True
    stream = False

    def read(self):
        return np.zeros((48, 64, 3), np.uint8)

    def close(self) -> None:
        pass


class BrokenModel:
    def estimate(self, rgb):
        raise RuntimeError("model crashed")

    def close(self) -> None:
        pass


@pytest.mark.slow
def test_a_pipeline_that_keeps_failing_brings_the_process_down_loudly(broker, recorder, tmp_path: Path, caplog) -> None:
    config = load_config(None, {"device_id": "broken", "data_dir": str(tmp_path), "camera.source": "demo",
                                "mqtt.broker": f"mqtt://127.0.0.1:{broker.port}"}, {})
    agent = Agent(config, estimator=BrokenModel(), opener=Frames).start()
    try:
        code = agent.wait(threading.Event())  # returns when a thread died
        assert code == 1
        assert agent.fatal and "pipeline failed 5 times" in agent.fatal
        assert "pipeline" in [r.getMessage() for r in caplog.records if r.levelname == "CRITICAL"][0]
    finally:
        agent.stop()
    t = Topics("deskpulse", "broken")
    recorder.wait_topic(t.availability, lambda m: m.payload == b"offline")
