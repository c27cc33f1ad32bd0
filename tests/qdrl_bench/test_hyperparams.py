"""Hyperparameter files: rl-zoo3's format, checked on read, sweep kwargs winning over them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch.nn as nn

from qdrl_bench import hyperparams as hp
from qdrl_bench import registry
from qdrl_bench.spec import SpecError

SECRECY = "qdrl/SecrecyPowerControl-v1"
AOI = "qdrl/DTSyncAoI-v0"

ZOO_STYLE = """\
qdrl/SecrecyPowerControl-v1:
  n_envs: 8
  n_timesteps: !!float 2e4
  policy: 'MlpPolicy'
  normalize: "{'norm_obs': True, 'norm_reward': False}"
  learning_rate: lin_3e-4
  clip_range: 0.2
  gamma: 0
  n_steps: 64.0
  policy_kwargs: "dict(net_arch=dict(pi=[32], vf=[32, 32]), activation_fn=nn.Tanh,
                       log_std_init=-1)"
"""


def test_reads_rl_zoo3_style_entries_without_evaluating_code() -> None:
    entry = hp.parse_hyperparams(ZOO_STYLE, "ppo", "ppo.yml")[SECRECY]
    assert entry.n_envs == 8 and entry.n_timesteps == 20_000
    assert entry.normalize == {"norm_obs": True, "norm_reward": False}
    assert entry.algo_kwargs["n_steps"] == 64 and isinstance(entry.algo_kwargs["n_steps"], int)
    assert entry.algo_kwargs["policy_kwargs"] == {
        "net_arch": {"pi": [32], "vf": [32, 32]}, "activation_fn": "Tanh", "log_std_init": -1}
    assert entry.source == "ppo.yml:1"
    resolved = hp.resolve_schedules(entry.algo_kwargs)
    assert resolved["learning_rate"](1.0) == pytest.approx(3e-4)
    assert resolved["learning_rate"](0.5) == pytest.approx(1.5e-4)
    assert resolved["policy_kwargs"]["activation_fn"] is nn.Tanh


@pytest.mark.parametrize(("text", "match"), [
    ("qdrl/SecrecyPowerControl-v1:\n  n_envs: 2\n  gama: 0.9\n",
     r"ppo\.yml:3: qdrl/SecrecyPowerControl-v1\.gama: unknown hyperparameter 'gama'"),
    ("qdrl/SecrecyPowerControl-v1:\n  gamma: high\n",
     r"ppo\.yml:2: .*\.gamma: must be like its default 0\.99"),
    ("qdrl/SecrecyPowerControl-v1:\n  n_steps: 2.5\n", r":2: .*\.n_steps: must be like"),
    ("qdrl/SecrecyPowerControl-v1:\n  n_envs: 0\n", r":2: .*\.n_envs: must be an integer >= 1"),
    ("qdrl/SecrecyPowerControll-v0:\n  n_envs: 2\n",
     r"ppo\.yml:1: .*unknown environment id .*did you mean \['qdrl/SecrecyPowerControl-v1'\]"),
    ("qdrl/SecrecyPowerControl-v1:\n  policy_kwargs: \"__import__('os').system('x')\"\n",
     r":2: .*policy_kwargs: only literals, dict\(\.\.\.\) and nn\.<Activation> are accepted"),
    ("qdrl/SecrecyPowerControl-v1:\n  normalize: {norm_obs: true, norm_rewards: true}\n",
     r":2: .*normalize\.norm_rewards: unknown VecNormalize argument"),
    ("qdrl/SecrecyPowerControl-v1:\n  policy_kwargs: {activation_fn: nn.Swish}\n",
     r"activation_fn: must be one of"),
    ("qdrl/SecrecyPowerControl-v1:\n  policy: CnnPolicy\n", r"registry chooses the policy"),
    ("qdrl/SecrecyPowerControl-v1:\n  learning_rate: cosine_1e-3\n", r"lin_<initial value>"),
    ("qdrl/SecrecyPowerControl-v1:\n  frame_stack: 4\n", r"not supported here"),
    ("qdrl/SecrecyPowerControl-v1:\n  n_envs: 2\n  n_envs: 4\n",
     r"ppo\.yml:3: .*n_envs: duplicate key \(first on line 2\)"),
    ("- a list\n", r"maps env ids to settings"),
    ("qdrl/SecrecyPowerControl-v1: [1, 2\n", r"malformed YAML"),
], ids=["unknown-key", "wrong-type", "float-int", "n_envs", "unknown-env", "code", "normalize",
        "activation", "policy", "schedule", "refused", "duplicate", "not-mapping", "yaml"])
def test_bad_files_are_refused_naming_file_line_and_key(text: str, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        hp.parse_hyperparams(text, "ppo", "ppo.yml")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_which_file_an_agent_reads(tmp_path: Path) -> None:
    _write(tmp_path, "ppo.yml", "default:\n  gamma: 0.5\n")
    _write(tmp_path, "q-ppo.yml", "qdrl/DTSyncAoI-v0:\n  gamma: 0.8\n")
    assert hp.file_for("ppo-small", tmp_path) == tmp_path / "ppo.yml"
    assert hp.file_for("q-ppo-hybrid", tmp_path) == tmp_path / "q-ppo.yml"
    assert hp.file_for("a2c", tmp_path) is None
    assert hp.hyperparams_for("q-ppo-hybrid", AOI, tmp_path).algo_kwargs == {"gamma": 0.8}
    assert hp.hyperparams_for("q-ppo", SECRECY, tmp_path) == hp.Hyperparams()
    assert hp.hyperparams_for("ppo", "CartPole-v1", tmp_path).algo_kwargs == {"gamma": 0.5}
    _write(tmp_path, "q-ppo-hybrid.yml", "qdrl/DTSyncAoI-v0:\n  gamma: 0.7\n")
    assert hp.hyperparams_for("q-ppo-hybrid", AOI, tmp_path).algo_kwargs == {"gamma": 0.7}


def test_settings_are_described_for_the_report(tmp_path: Path) -> None:
    _write(tmp_path, "ppo.yml", "qdrl/DTSyncAoI-v0:\n  gamma: 0.8\n")
    assert hp.describe_settings("ppo", AOI, tmp_path) == "ppo.yml:1, hand-set"
    assert hp.describe_settings("a2c", AOI, tmp_path) == "SB3 defaults"
    (tmp_path / "tuning.json").write_text(json.dumps({"timesteps_per_trial": 500, "studies": [
        {"env_id": AOI, "file": "ppo.yml", "trials": {"complete": 3, "pruned": 1}}]}))
    assert hp.describe_settings("ppo", AOI, tmp_path) \
        == "ppo.yml:1, tuned: 4 trials (3 complete, 1 pruned) x 500 steps"
    # An entry that is not the study's best settings (kept, or edited by hand) is hand-set.
    study = {"env_id": AOI, "file": "ppo.yml", "trials": {"complete": 3, "pruned": 1},
             "best_trial": 2}
    for best, described in (({"gamma": 0.8}, "tuned: 4 trials"),
                            ({"gamma": 0.99, "n_steps": 16}, "hand-set (not its tuning "
                                                             "study's best, trial 2)")):
        (tmp_path / "tuning.json").write_text(json.dumps({"timesteps_per_trial": 500, "studies": [
            {**study, "best_settings": best}]}))
        assert described in hp.describe_settings("ppo", AOI, tmp_path)
    (tmp_path / "tuning.json").write_text("{not json")  # a broken summary: the file alone
    assert hp.describe_settings("ppo", AOI, tmp_path) == "ppo.yml:1, hand-set"
    _write(tmp_path, "ppo.yml", "qdrl/DTSyncAoI-v0:\n  gama: 0.8\n")
    assert hp.describe_settings("ppo", AOI, tmp_path).startswith("malformed file: ")


def test_sweep_kwargs_win_over_the_file(tmp_path: Path) -> None:
    _write(tmp_path, "ppo.yml", """\
        qdrl/DTSyncAoI-v0:
          n_envs: 8
          normalize: true
          gamma: 0.9
          policy_kwargs: {net_arch: [32], log_std_init: -1.0}
        """)
    base = registry.train_settings("ppo", AOI, {}, directory=tmp_path)
    assert (base.n_envs, base.normalize, base.algo_kwargs["gamma"]) == (8, {}, 0.9)
    over = registry.train_settings(
        "ppo", AOI, {"gamma": 0.5, "n_envs": 2, "normalize": False,
                     "policy_kwargs": {"net_arch": [8]}, "adapter": {"levels": 3}},
        directory=tmp_path)
    assert (over.n_envs, over.normalize, over.adapter) == (2, None, {"levels": 3})
    assert over.algo_kwargs["gamma"] == 0.5
    assert over.algo_kwargs["policy_kwargs"] == {"net_arch": [8], "log_std_init": -1.0}
    with pytest.raises(SpecError, match=r"agent ppo kwargs\.n_envs: must be an integer >= 1"):
        registry.train_settings("ppo", AOI, {"n_envs": -1}, directory=tmp_path)


def test_a_small_agent_ignores_its_algorithms_network_and_refuses_one(tmp_path: Path) -> None:
    _write(tmp_path, "sac.yml", "Pendulum-v1:\n  gamma: 0.9\n  policy_kwargs: "
                                "{net_arch: [64, 64], log_std_init: -2.0}\n")
    small = registry.train_settings("sac-small", "Pendulum-v1", {}, directory=tmp_path)
    assert small.algo_kwargs == {"gamma": 0.9, "policy_kwargs": {"log_std_init": -2.0}}
    full = registry.train_settings("sac", "Pendulum-v1", {}, directory=tmp_path)
    assert full.algo_kwargs["policy_kwargs"]["net_arch"] == [64, 64]
    import gymnasium as gym

    with pytest.raises(ValueError, match="net_arch is computed to match q-sac"):
        registry.build_agent("sac-small", gym.make("Pendulum-v1"), seed=0, timesteps=64,
                             kwargs={"policy_kwargs": {"net_arch": [8]}})


def test_dump_reads_back() -> None:
    entries = {SECRECY: {"n_envs": 4, "normalize": {"norm_reward": False}, "gamma": 0.0,
                         "policy_kwargs": {"net_arch": [16, 16]}, "learning_rate": 1e-3}}
    text = hp.dump_hyperparams(entries, header="tuned by a test\nsecond line")
    assert text.startswith("# tuned by a test\n# second line\n")
    back = hp.parse_hyperparams(text, "ppo", "dumped.yml")[SECRECY]
    assert back.as_kwargs() == entries[SECRECY]


@pytest.mark.parametrize("path", sorted(hp.DEFAULT_DIR.glob("*.yml")), ids=lambda p: p.name)
def test_shipped_files_parse(path: Path) -> None:
    assert hp.load_hyperparams(path, registry.get_agent(path.stem).algo)


_EVAL_IN_FRESH_PROCESS = """
import json, sys
import gymnasium as gym
import qdrl_envs
from qdrl_bench import registry
from qdrl_bench.execute import evaluate
model, obs_filter = registry.load_agent(sys.argv[1], "ppo")
env = gym.make("qdrl/DTSyncAoI-v0", max_episode_steps=20)
returns, _ = evaluate(model, env, 3, 7, obs_filter=obs_filter)
print(json.dumps({"returns": returns, "filtered": obs_filter is not None}))
"""


def test_vec_normalize_statistics_travel_with_the_saved_model(tmp_path: Path) -> None:
    import gymnasium as gym

    from qdrl_bench.execute import evaluate

    venv, _ = registry.make_train_env(AOI, {}, n_envs=4, max_episode_steps=20,
                                      normalize={}, gamma=0.9)
    model, _ = registry.build_agent("ppo", venv, seed=0, timesteps=320,
                                    kwargs={"n_steps": 40, "batch_size": 40, "n_epochs": 1})
    model.learn(320)
    written = registry.save_agent(model, tmp_path / "agent")
    assert [Path(p).name for p in written] == ["model.zip", "vecnormalize.pkl"]
    env = gym.make(AOI, max_episode_steps=20)
    here, _ = evaluate(model, env, 3, 7, obs_filter=venv.normalize_obs)
    raw, _ = evaluate(model, env, 3, 7)
    assert here != raw  # the statistics matter, so the check below means something
    out = subprocess.run([sys.executable, "-c", _EVAL_IN_FRESH_PROCESS, str(tmp_path / "agent")],
                         capture_output=True, text=True, check=True)
    there = json.loads(out.stdout.strip().splitlines()[-1])
    assert there["filtered"]
    np.testing.assert_array_equal(there["returns"], here)
    with pytest.raises(FileNotFoundError, match="no saved model"):
        registry.load_agent(tmp_path / "nothing", "ppo")


def test_a_sweep_without_timesteps_takes_each_agents_file_budget() -> None:
    from qdrl_bench.spec import DEFAULT_TIMESTEPS, expand_runs, parse_sweep

    spec = parse_sweep("name: t\nenvs: [qdrl/DTMigration-v0, CartPole-v1]\n"
                       "agents: [ppo, a2c, random, {name: ppo, label: short, timesteps: 64}]\n")
    runs = {(r.env.id, r.agent.label): r.timesteps
            for r in expand_runs(spec, baselines_of=registry.baselines_for,
                                 timesteps_of=registry.default_timesteps)}
    file_budget = hp.hyperparams_for("ppo", "qdrl/DTMigration-v0").n_timesteps
    assert file_budget is not None and file_budget != DEFAULT_TIMESTEPS
    assert runs[("qdrl/DTMigration-v0", "ppo")] == file_budget
    assert runs[("qdrl/DTMigration-v0", "a2c")] == DEFAULT_TIMESTEPS  # a2c has no file
    assert runs[("qdrl/DTMigration-v0", "random")] == file_budget  # the widest, for the plots
    assert runs[("qdrl/DTMigration-v0", "short")] == 64
    assert runs[("CartPole-v1", "ppo")] == DEFAULT_TIMESTEPS
    given = parse_sweep("name: t\ntimesteps: 96\nenvs: [qdrl/DTMigration-v0]\nagents: [ppo]\n")
    assert [r.timesteps for r in expand_runs(given, timesteps_of=registry.default_timesteps)] \
        == [96]
