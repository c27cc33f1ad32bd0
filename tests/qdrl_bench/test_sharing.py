"""Shared agents: weights and JSON, rebuilt without unpickling; crafted files refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from qdrl_bench import registry
from qdrl_bench.execute import evaluate
from qdrl_bench.sharing import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    SharedAgentError,
    export_agent,
    import_agent,
)

AOI = "qdrl/DTSyncAoI-v0"

_EVAL_IN_FRESH_PROCESS = """
import json, sys
import gymnasium as gym
import qdrl_envs
from qdrl_bench.execute import evaluate
from qdrl_bench.sharing import import_agent
model, obs_filter = import_agent(sys.argv[1])
env = gym.make("qdrl/DTSyncAoI-v0", max_episode_steps=20)
returns, _ = evaluate(model, env, 3, 7, obs_filter=obs_filter)
print(json.dumps({"returns": returns, "filtered": obs_filter is not None,
                  "unpickled": sorted(m for m in sys.modules if "cloudpickle" in m)}))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[object, object, Path]:
    venv, _ = registry.make_train_env(AOI, {}, n_envs=4, max_episode_steps=20,
                                      normalize={}, gamma=0.9)
    kwargs = {"n_steps": 40, "batch_size": 40, "n_epochs": 1}
    model, _ = registry.build_agent("ppo", venv, seed=0, timesteps=320,
                                    kwargs=registry.train_settings("ppo", AOI, kwargs).algo_kwargs)
    model.learn(320)
    out = tmp_path_factory.mktemp("shared") / "agent"
    written = export_agent(model, out, name="ppo", env_id=AOI, timesteps=320, kwargs=kwargs,
                           max_episode_steps=20)
    assert sorted(Path(p).name for p in written) == [CONFIG_FILE, WEIGHTS_FILE]
    return model, venv, out


def test_an_exported_agent_evaluates_identically_in_a_fresh_process(trained) -> None:
    model, venv, out = trained
    env = gym.make(AOI, max_episode_steps=20)
    here, _ = evaluate(model, env, 3, 7, obs_filter=venv.normalize_obs)
    raw, _ = evaluate(model, env, 3, 7)
    assert here != raw  # the statistics matter, so the comparison below means something
    proc = subprocess.run([sys.executable, "-c", _EVAL_IN_FRESH_PROCESS, str(out)],
                          capture_output=True, text=True, check=True)
    there = json.loads(proc.stdout.strip().splitlines()[-1])
    assert there["filtered"]
    np.testing.assert_array_equal(there["returns"], here)

    again, obs_filter = import_agent(out)
    obs = np.stack([venv.observation_space.sample() for _ in range(16)])
    np.testing.assert_array_equal(obs_filter(obs), venv.normalize_obs(obs))
    np.testing.assert_array_equal(again.predict(obs_filter(obs), deterministic=True)[0],
                                  model.predict(venv.normalize_obs(obs), deterministic=True)[0])


def test_a_quantum_agent_travels_too(tmp_path: Path) -> None:
    env, _ = registry.make_train_env("qdrl/SecrecyPowerControl-v1", {}, n_envs=2)
    kwargs = {"n_steps": 8, "batch_size": 8, "policy_kwargs": {"n_layers": 1}}
    model, counts = registry.build_agent("q-ppo-hybrid", env, seed=3, timesteps=64,
                                         kwargs=kwargs)
    assert counts["quantum"] > 0
    export_agent(model, tmp_path, name="q-ppo-hybrid", env_id="qdrl/SecrecyPowerControl-v1",
                 timesteps=64, kwargs=kwargs)
    again, obs_filter = import_agent(tmp_path)
    assert obs_filter is None
    obs = np.stack([env.observation_space.sample() for _ in range(4)])
    np.testing.assert_array_equal(again.predict(obs, deterministic=True)[0],
                                  model.predict(obs, deterministic=True)[0])


class _Payload:
    """Writes a marker file when unpickled: what a crafted model file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_crafted_weights_file_is_refused_unread(trained, tmp_path: Path, how: str) -> None:
    import pickle
    import shutil

    _, _, out = trained
    crafted = tmp_path / "crafted"
    shutil.copytree(out, crafted)
    marker = tmp_path / "marker"
    payload = {"mlp_extractor.policy_net.0.weight": _Payload(marker)}
    if how == "torch.save":
        torch.save(payload, crafted / WEIGHTS_FILE)
    else:
        (crafted / WEIGHTS_FILE).write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(SharedAgentError, match=r"not a file of tensors \(refused by "
                                               r"torch.load\(weights_only=True\)\)"):
        import_agent(crafted)
    assert not marker.exists()
    # SB3's own loader would have run it: the reason this path exists.
    pickle.loads((crafted / WEIGHTS_FILE).read_bytes()) if how == "pickle" else \
        torch.load(crafted / WEIGHTS_FILE, weights_only=False)
    assert marker.read_text() == "ran"


def _edited(out: Path, tmp_path: Path, edit) -> Path:
    import shutil

    target = tmp_path / f"edited-{len(list(tmp_path.iterdir()))}"
    shutil.copytree(out, target)
    config = json.loads((target / CONFIG_FILE).read_text())
    edit(config)
    (target / CONFIG_FILE).write_text(json.dumps(config))
    return target


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c.pop("env_id"), r"env_id: missing"),
    (lambda c: c.update(timesteps="320"), r"timesteps: wrong type str"),
    (lambda c: c.update(extra=1), r"unknown keys \['extra'\]"),
    (lambda c: c.update(format="qdrl-agent/9"), r"format: expected 'qdrl-agent/1'"),
    (lambda c: c["normalize"].update(mean=[0.0]), r"normalize.mean: expected finite numbers"),
    (lambda c: c["normalize"].update(clip_obs=True), r"normalize.clip_obs: missing or of the"),
    (lambda c: c["normalize"]["var"].__setitem__(0, "1"), r"normalize.var: expected finite"),
    (lambda c: c.update(observation_shape=[3], normalize=None), r"observation_shape \[3\] but"),
    (lambda c: c["algo_kwargs"].update(policy_kwargs={"net_arch": [8]}),
     r"does not fit the policy agent.json describes"),
])
def test_a_malformed_description_is_refused_naming_the_key(trained, tmp_path: Path, edit,
                                                          message: str) -> None:
    _, _, out = trained
    with pytest.raises(SharedAgentError, match=message):
        import_agent(_edited(out, tmp_path, edit))


def test_missing_files_are_named(trained, tmp_path: Path) -> None:
    with pytest.raises(SharedAgentError, match=f"no {CONFIG_FILE} there"):
        import_agent(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(SharedAgentError, match="not readable JSON"):
        import_agent(tmp_path)
    _, _, out = trained
    (tmp_path / CONFIG_FILE).write_text((out / CONFIG_FILE).read_text())
    with pytest.raises(SharedAgentError, match="no weights there"):
        import_agent(tmp_path)
    with pytest.raises(SharedAgentError,
                       match=r"agent\.algo_kwargs\.f: builtin_function_or_method .* not JSON"):
        export_agent(trained[0], tmp_path / "x", name="ppo", env_id=AOI, timesteps=320,
                     kwargs={"policy_kwargs": {"activation_fn": "tanh"}, "f": print})
