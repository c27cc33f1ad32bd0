"""Parameter-shared training of the multi-agent envs (qdrl_bench.marl_train).

Training runs are tiny (a few hundred SB3 timesteps): they check the plumbing (parameters
move, a saved model acts the same in a fresh process, every agent gets an action in its own
space), not learning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo.utils import BaseParallelWrapper

from qdrl_agents.layers import quantum_parameter_groups
from qdrl_bench import marl_train as mt
from qdrl_bench.registry import NotApplicable

REPO = Path(__file__).resolve().parents[2]
JAM = "qdrl/SecrecyJamming-v0"
SLICE = "qdrl/SliceOrchestration-v0"

# Three roles with three action sizes: tx (1), choose (2: role, power; one target), jam (3:
# power and the beam weights over the two eavesdroppers it may target).
ENV_KWARGS: dict[str, dict[str, Any]] = {
    JAM: {"roles": ["tx", "choose", "jam"], "max_cycles": 16},
    SLICE: {"max_cycles": 16},
}
TINY = {"n_steps": 32, "batch_size": 48, "n_epochs": 2}  # 3 agents x 32 = 96 per rollout
TIMESTEPS = 288
CASES = [(JAM, "ppo"), (JAM, "q-ppo-hybrid"), (SLICE, "ppo"), (SLICE, "q-ppo-hybrid")]


class Recorder(BaseParallelWrapper):
    """Keeps every action dict the env is stepped with (a copy), then steps the env."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.seen: list[dict[str, np.ndarray]] = []

    def step(self, actions: Any) -> Any:
        self.seen.append({a: np.array(v, copy=True) for a, v in actions.items()})
        return self.env.step(actions)


class HalfRangeTx(BaseParallelWrapper):
    """Presents ``ap_0``'s action as ``Box(0, 1, (1,))`` (mapped to the env's ``2a - 1``).

    So the agents' Boxes have different bounds, and the padded space's ``[-1, 1]`` on that entry
    is wider than ``ap_0``'s own: an action from the padded space must be clipped into
    ``ap_0``'s Box, or ``2a - 1`` leaves the env's and the env raises.
    """

    SPACE = spaces.Box(0.0, 1.0, (1,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        return self.SPACE if agent == "ap_0" else self.env.action_space(agent)

    def step(self, actions: Any) -> Any:
        a0 = np.asarray(actions["ap_0"])
        if not self.SPACE.contains(a0):
            raise ValueError(f"ap_0 got {a0!r}, outside its own space {self.SPACE}")
        return self.env.step({**actions, "ap_0": (2.0 * a0 - 1.0).astype(np.float32)})


def _recorders(venv: Any) -> list[Recorder]:
    """The Recorder inside each env copy of a shared vector env (copies are deep copies)."""
    out = []
    for copy in venv.venv.vec_envs:  # ConcatVecEnv -> one MarkovVectorEnv per copy
        env, seen = copy.par_env, set()
        while not isinstance(env, Recorder):
            assert id(env) not in seen, "no Recorder in the chain"
            seen.add(id(env))
            env = next(getattr(env, k) for k in ("env", "aec_env", "par_env")
                       if k in vars(env))
        out.append(env)
    return out


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any]:
    """Each case trained TIMESTEPS, with its parameters before training, saved to a dir."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Snapshot(BaseCallback):
        def _on_training_start(self) -> None:
            self.before = {k: v.detach().clone()
                           for k, v in self.model.policy.named_parameters()}

        def _on_step(self) -> bool:
            return True

    out = {}
    threads = torch.get_num_threads()
    for env_id, agent in CASES:
        snap = Snapshot()
        run = mt.train_shared(env_id, agent, timesteps=TIMESTEPS, seed=3, kwargs=TINY,
                              env_kwargs=ENV_KWARGS[env_id], callback=snap)
        assert torch.get_num_threads() == threads  # trained on one thread, then restored
        directory = tmp_path_factory.mktemp(agent) / env_id.replace("/", "_")
        mt.save_shared(run.model, run.spec, directory)
        out[(env_id, agent)] = (run, snap.before, directory)
    return out


@pytest.mark.parametrize(("env_id", "agent"), CASES)
def test_training_moves_the_shared_parameters(trained: Any, env_id: str, agent: str) -> None:
    run, before, _ = trained[(env_id, agent)]
    assert run.rows == 3 and run.timesteps >= TIMESTEPS
    assert run.spec == mt.SharedSpec(env_id, agent, ENV_KWARGS[env_id], False)
    if agent.startswith("q-"):
        assert run.counts["quantum"] > 0
    after = dict(run.model.policy.named_parameters())
    moved = {k for k in before if not torch.equal(before[k], after[k].detach())}
    assert moved, "no parameter changed in training"
    if agent.startswith("q-"):  # the circuit's own weights train too, not only the encoder
        weights = {id(p) for p in quantum_parameter_groups(run.model.policy)["weights"]}
        names = {k for k, p in after.items() if id(p) in weights}
        assert names, f"no circuit weights among {sorted(after)}"
        assert names & moved, f"no circuit weight moved; moved: {sorted(moved)}"


def test_an_off_policy_agent_shares_too() -> None:
    run = mt.train_shared(JAM, "sac", timesteps=60, seed=0, env_kwargs=ENV_KWARGS[JAM],
                          kwargs={"learning_starts": 30, "batch_size": 16})
    assert run.model.replay_buffer.n_envs == 3  # one row per agent in the buffer
    assert run.model.replay_buffer.actions.shape[-1] == 3  # the padded action
    ev = mt.evaluate_shared(run.model, run.spec, episodes=1, seed=10_000)
    assert ev.returns.shape == (1, 3) and np.isfinite(ev.returns).all()


def test_the_same_seed_trains_the_same_policy() -> None:
    def params(seed: int) -> list[np.ndarray]:
        run = mt.train_shared(JAM, "ppo", timesteps=96, seed=seed, kwargs=TINY,
                              env_kwargs=ENV_KWARGS[JAM])
        return [p.detach().numpy().copy() for p in run.model.policy.parameters()]

    a, b, c = params(5), params(5), params(6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


_RELOAD = """
import json, sys
import numpy as np
from qdrl_agents.layers import quantum_parameter_groups
from qdrl_bench import marl_train as mt
cases = json.loads(sys.argv[1])
for directory, obs_file, out_file in cases:
    model, obs_filter, spec = mt.load_shared(directory)
    assert obs_filter is None
    actions, _ = model.predict(np.load(obs_file), deterministic=True)
    np.save(out_file, actions)
    print(spec.env_id, spec.agent, actions.shape)
"""


def test_saved_models_act_identically_in_a_fresh_process(trained: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cases, expected = [], []
    for k, (run, _, directory) in enumerate(trained.values()):
        space = run.model.observation_space
        obs = rng.uniform(space.low, space.high, (7, *space.shape)).astype(np.float32)
        np.save(tmp_path / f"obs{k}.npy", obs)
        cases.append([str(directory), str(tmp_path / f"obs{k}.npy"),
                      str(tmp_path / f"act{k}.npy")])
        expected.append(run.model.predict(obs, deterministic=True)[0])
        assert json.loads((Path(directory) / mt.SPEC_FILE).read_text())["env_id"] \
            == run.spec.env_id
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _RELOAD, json.dumps(cases)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for (_, _, out_file), want in zip(cases, expected, strict=True):
        got = np.load(out_file)
        assert got.shape == want.shape
        assert np.array_equal(got, want)


def test_a_loaded_model_evaluates_like_the_trained_one(trained: Any) -> None:
    run, _, directory = trained[(JAM, "ppo")]
    model, obs_filter, spec = mt.load_shared(directory)
    assert spec == run.spec
    a = mt.evaluate_shared(run.model, run.spec, episodes=2, seed=500)
    b = mt.evaluate_shared(model, spec, episodes=2, seed=500, obs_filter=obs_filter)
    assert np.array_equal(a.returns, b.returns)
    assert np.array_equal(a.team_returns, b.team_returns)


def test_normalised_training_saves_and_reloads_its_statistics(tmp_path: Path) -> None:
    run = mt.train_shared(SLICE, "ppo", timesteps=96, seed=0, env_kwargs={"max_cycles": 8},
                          kwargs={**TINY, "normalize": True})
    frozen = run.obs_filter()
    assert frozen is not None
    written = mt.save_shared(run.model, run.spec, tmp_path)
    assert {Path(p).name for p in written} == {"model.zip", "vecnormalize.pkl", mt.SPEC_FILE}
    model, obs_filter, spec = mt.load_shared(tmp_path)
    obs = np.random.default_rng(0).uniform(0, 1, (3, *model.observation_space.shape))
    assert np.array_equal(obs_filter(obs), frozen(obs))
    assert not np.allclose(frozen(obs), obs)  # it does normalise
    a = mt.evaluate_shared(run.model, run.spec, episodes=1, seed=9, obs_filter=frozen)
    b = mt.evaluate_shared(model, spec, episodes=1, seed=9, obs_filter=obs_filter)
    assert np.array_equal(a.returns, b.returns)


# ----------------------------------------------------------------------------- actions


@pytest.mark.parametrize("env_id", [JAM, SLICE])
def test_every_agent_gets_its_row_in_its_own_space(env_id: str) -> None:
    spec = mt.SharedSpec(env_id, "ppo", ENV_KWARGS[env_id])
    venv = mt.make_shared_vec_env(spec, n_copies=2, parallel_wrappers=[Recorder])
    raw = mt.shared_parallel_env(spec).unwrapped
    agents = list(raw.possible_agents)
    own = {a: raw.action_space(a) for a in agents}
    padded = venv.action_space
    assert venv.num_envs == 2 * len(agents)
    assert padded.shape == (max(s.shape[0] for s in own.values()),)
    if env_id == JAM:
        assert [own[a].shape for a in agents] == [(1,), (2,), (3,)]
    venv.seed(0)
    venv.reset()
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(ENV_KWARGS[env_id]["max_cycles"]):
        actions = rng.uniform(padded.low, padded.high, (venv.num_envs, *padded.shape))
        actions[0, 0] = padded.low[0]  # the corners too
        actions[-1, -1] = padded.high[-1]
        rows.append(actions.astype(np.float32))
        venv.step(rows[-1])  # the qdrl envs raise on any misshaped or out-of-range action
    for c, recorder in enumerate(_recorders(venv)):
        assert len(recorder.seen) == len(rows)
        for actions, seen in zip(rows, recorder.seen, strict=True):
            assert sorted(seen) == sorted(agents)
            for i, a in enumerate(agents):
                got = seen[a]
                assert got.shape == own[a].shape and got.dtype == own[a].dtype
                assert own[a].contains(got), (a, got)
                row = actions[c * len(agents) + i]
                assert np.array_equal(got, row[: own[a].shape[0]]), (a, got, row)
    # Like SB3's own vector envs, the shared one does not repair actions (SB3's algorithms clip
    # them into its action space before stepping): outside the padded space the env says so.
    bad = np.zeros((venv.num_envs, *padded.shape), np.float32)
    bad[1, 0] = 3.0
    with pytest.raises(ValueError, match=rf"{agents[1]}.*outside"):
        venv.step(bad)
    venv.close()


def test_roles_with_different_bounds_get_actions_inside_their_own_box() -> None:
    spec = mt.SharedSpec(JAM, "ppo", {"max_cycles": 8})
    venv = mt.make_shared_vec_env(spec, parallel_wrappers=[HalfRangeTx])
    assert np.array_equal(venv.action_space.low, -np.ones(3))  # the union of the bounds
    venv.seed(0)
    venv.reset()
    for _ in range(8):  # ap_0's row at -1 .. 0: inside the padded space, outside ap_0's own
        venv.step(np.full((3, 3), -0.5, np.float32))
    venv.close()


def test_a_policy_trains_through_roles_with_different_bounds() -> None:
    run = mt.train_shared(JAM, "ppo", timesteps=96, seed=0, kwargs=TINY,
                          env_kwargs={"max_cycles": 8}, parallel_wrappers=[HalfRangeTx])
    assert run.timesteps >= 96


def test_evaluation_sends_in_space_actions_and_sums_the_team_reward(trained: Any) -> None:
    run, _, _ = trained[(JAM, "ppo")]
    spec = run.spec
    ev = mt.evaluate_shared(run.model, spec, episodes=3, seed=10_000)
    assert ev.agents == ("ap_0", "ap_1", "ap_2") and ev.seeds == (10_000, 10_001, 10_002)
    assert ev.returns.shape == (3, 3) and ev.team_returns.shape == (3,)
    assert list(ev.lengths) == [16, 16, 16]
    assert ev.metrics["eval/secrecy_sum"] > 0
    again = mt.evaluate_shared(run.model, spec, episodes=3, seed=10_000)
    assert np.array_equal(ev.returns, again.returns)
    other = mt.evaluate_shared(run.model, spec, episodes=3, seed=20_000)
    assert not np.array_equal(ev.returns, other.returns)


def test_team_return_of_the_slices_is_the_mean_of_the_cells(trained: Any) -> None:
    run, _, _ = trained[(SLICE, "ppo")]
    ev = mt.evaluate_shared(run.model, run.spec, episodes=2, seed=7)
    assert np.allclose(ev.team_returns, ev.returns.mean(axis=1))
    assert set(ev.mean_returns) == {"cell_0", "cell_1", "cell_2"}


def test_team_return_of_fixed_transmitters_is_their_secrecy_sum() -> None:
    spec = mt.SharedSpec(JAM, "ppo", {"roles": ["tx", "tx", "jam"], "max_cycles": 6,
                                      "varsigma": 2.0})
    run = mt.train_shared(spec.env_id, "ppo", timesteps=64, seed=1, env_kwargs=spec.env_kwargs,
                          kwargs={"n_steps": 32, "batch_size": 32, "n_epochs": 1})
    ev = mt.evaluate_shared(run.model, run.spec, episodes=2, seed=3)
    # individual mode: a transmitter's reward is varsigma x its user's secrecy rate, the team
    # reward varsigma x the sum of them (the jammer's user is idle)
    assert np.allclose(ev.team_returns, ev.returns[:, :2].sum(axis=1))


# ----------------------------------------------------------------------------- vector env


def test_seeds_reach_each_copy_and_time_limits_are_truncations() -> None:
    spec = mt.SharedSpec(SLICE, "ppo", {"max_cycles": 5})
    first = []
    for seed in (4, 5):
        venv = mt.make_shared_vec_env(spec, n_copies=2)
        assert venv.seed(seed) == [seed] * 3 + [seed + 1] * 3
        first.append(venv.reset())
        venv.close()
    # copy i is reset with seed + i: copy 1 of seed 4 is copy 0 of seed 5
    assert np.array_equal(first[0][3:], first[1][:3])
    assert not np.array_equal(first[0][:3], first[1][:3])
    venv = mt.make_shared_vec_env(spec)
    venv.seed(0)
    venv.reset()
    zeros = np.zeros((3, 3), np.float32)
    for _ in range(4):
        _, _, dones, infos = venv.step(zeros)
        assert not dones.any() and not any("TimeLimit.truncated" in i for i in infos)
    obs, _, dones, infos = venv.step(zeros)
    assert dones.all()
    assert all(i["TimeLimit.truncated"] is True for i in infos)
    assert all(i["terminal_observation"].shape == venv.observation_space.shape for i in infos)
    assert venv.observation_space.contains(obs[0])  # already the next episode's
    venv.close()


def test_agent_indicator_appends_a_one_hot_of_the_agent() -> None:
    plain = mt.make_shared_vec_env(mt.SharedSpec(SLICE, "ppo", {"max_cycles": 5}))
    marked = mt.make_shared_vec_env(mt.SharedSpec(SLICE, "ppo", {"max_cycles": 5},
                                                  agent_indicator=True))
    for v in (plain, marked):
        v.seed(2)
    a, b = plain.reset(), marked.reset()
    assert b.shape == (3, a.shape[1] + 3)
    assert np.array_equal(b[:, : a.shape[1]], a)
    assert np.array_equal(b[:, a.shape[1]:], np.eye(3, dtype=np.float32))


# ----------------------------------------------------------------------------- bad input


def test_unknown_env_id_is_named() -> None:
    with pytest.raises(ValueError, match=r"'qdrl/Nope-v0'"):
        mt.train_shared("qdrl/Nope-v0", "ppo", timesteps=10)
    with pytest.raises(ValueError, match=r"'CartPole-v1'"):
        mt.check_shareable("CartPole-v1", "ppo")


@pytest.mark.parametrize(("agent", "why"), [
    ("oracle", "baseline"), ("full-power-jam", "baseline"), ("dqn", "Discrete"),
    ("q-dqn", "Discrete"), ("ppo2", "unknown agent")])
def test_agents_that_cannot_be_shared_are_named(agent: str, why: str) -> None:
    with pytest.raises(ValueError, match=rf"'{agent}'.*{why}|{why}.*'{agent}'"):
        mt.train_shared(JAM, agent, timesteps=10)


def test_one_qubit_per_feature_is_refused_with_the_count() -> None:
    with pytest.raises(NotApplicable, match=r"q-ppo.*21 > MAX_QUBITS"):
        mt.train_shared(JAM, "q-ppo", timesteps=10)


def test_bad_numbers_and_kwargs_are_named() -> None:
    with pytest.raises(ValueError, match="timesteps"):
        mt.train_shared(JAM, "ppo", timesteps=0)
    with pytest.raises(ValueError, match="torch_threads"):
        mt.train_shared(JAM, "ppo", timesteps=10, torch_threads=0)
    with pytest.raises(ValueError, match="adapter"):
        mt.train_shared(JAM, "ppo", timesteps=10, kwargs={"adapter": {"levels": 3}})
    with pytest.raises(ValueError, match="n_copies"):
        mt.make_shared_vec_env(mt.SharedSpec(JAM, "ppo"), n_copies=0)
    with pytest.raises(ValueError, match="episodes"):
        mt.evaluate_shared(None, mt.SharedSpec(JAM, "ppo"), episodes=0)
    with pytest.raises(TypeError, match="JSON"):
        mt.train_shared(JAM, "ppo", timesteps=10, env_kwargs={"roles": object()})


def test_a_model_of_another_spec_is_refused(trained: Any) -> None:
    run, _, _ = trained[(SLICE, "ppo")]
    with pytest.raises(ValueError, match="not the spec it was trained on"):
        mt.evaluate_shared(run.model, mt.SharedSpec(JAM, "ppo"), episodes=1)


def test_mixed_space_kinds_cannot_be_padded() -> None:
    class DiscreteTx(BaseParallelWrapper):
        def action_space(self, agent: str) -> spaces.Space:
            return spaces.Discrete(3) if agent == "ap_0" else self.env.action_space(agent)

    with pytest.raises(ValueError, match="different kinds"):
        mt.make_shared_vec_env(mt.SharedSpec(JAM, "ppo"), parallel_wrappers=[DiscreteTx])
