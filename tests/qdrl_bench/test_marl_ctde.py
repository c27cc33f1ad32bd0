"""MAPPO / IPPO (centralised training, decentralised execution) on the qdrl multi-agent envs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from qdrl_agents.layers import QuantumLayer
from qdrl_bench.marl_ctde import (
    CTDEAgents,
    CTDEConfig,
    evaluate_ctde,
    group_map,
    matched_widths,
    train_ctde,
)
from qdrl_envs.marl import make_parallel

REPO = Path(__file__).resolve().parents[2]
SJ = "qdrl/SecrecyJamming-v0"
SO = "qdrl/SliceOrchestration-v0"

# A few hundred steps of MAPPO, quantum actors and quantum centralised critics.
SHORT = {"total_steps": 300, "frames_per_batch": 100, "minibatch_size": 50, "n_epochs": 2,
         "env_kwargs": {"max_cycles": 50}, "seed": 3}


@pytest.fixture(scope="module")
def mappo_quantum():
    return train_ctde(SJ, "mappo", family="quantum", **SHORT)


def _observations(env_id: str, seed: int, **env_kwargs) -> dict[str, np.ndarray]:
    env = make_parallel(env_id, **env_kwargs)
    obs, _ = env.reset(seed=seed)
    return obs


def test_mappo_quantum_trains_and_parameters_change(mappo_quantum):
    agents, history = mappo_quantum.agents, mappo_quantum.history
    assert [h["steps"] for h in history] == [100, 200, 300]
    for h in history:
        assert set(h["reward"]) == {"tx", "jam"}
        assert np.isfinite(h["loss_objective"]) and np.isfinite(h["loss_critic"])
    # The same config builds the same initial networks (seeded), so this is "before training".
    initial = CTDEAgents(agents.config).state_dict()
    trained = agents.state_dict()
    assert initial.keys() == trained.keys()
    for prefix in ("actors.tx.", "actors.jam.", "critics.tx.", "critics.jam."):
        changed = [k for k in trained if k.startswith(prefix)
                   and not torch.equal(trained[k], initial[k])]
        assert changed, f"no parameter of {prefix[:-1]} changed in training"
    # The circuit weights themselves were trained, not only the classical encoders.
    assert not torch.equal(trained["actors.tx.body.net.quantum.weights"],
                           initial["actors.tx.body.net.quantum.weights"])
    assert not torch.equal(trained["critics.jam.body.net.quantum.weights"],
                           initial["critics.jam.body.net.quantum.weights"])


def test_mappo_quantum_networks_are_quantum_and_critic_is_centralised(mappo_quantum):
    agents = mappo_quantum.agents
    assert agents.groups == {"tx": ["ap_0", "ap_1"], "jam": ["ap_2"]}
    for g in agents.groups:
        assert any(isinstance(m, QuantumLayer) for m in agents.actors[g].modules())
        assert any(isinstance(m, QuantumLayer) for m in agents.critics[g].modules())
    counts = agents.parameter_counts()
    assert all(n > 0 for n in counts["actor_quantum"].values())
    assert all(n > 0 for n in counts["critic_quantum"].values())
    env = make_parallel(SJ, max_cycles=50)
    state_dim = env.state_space.shape[0]
    # The centralised critic reads the global state and gives one value per agent of its group.
    state = torch.as_tensor(np.stack([env.state_space.sample() for _ in range(5)]))
    for g, members in agents.groups.items():
        assert agents.critics[g].body.net.in_features == state_dim
        assert agents.critics[g](state).shape == (5, len(members), 1)


def test_actions_are_decentralised_and_inside_the_spaces(mappo_quantum):
    agents = mappo_quantum.agents
    env = make_parallel(SJ, max_cycles=50)
    obs, _ = env.reset(seed=11)
    actions = agents.predict(obs)
    for a, act in actions.items():
        assert act.dtype == np.float32
        assert env.action_space(a).contains(act)
    # An agent's action depends on its own observation only.
    alone = agents.predict({"ap_1": obs["ap_1"]})
    np.testing.assert_array_equal(alone["ap_1"], actions["ap_1"])
    env.step(actions)  # the env accepts them


def test_save_and_reload_in_a_fresh_process_gives_identical_actions(mappo_quantum, tmp_path):
    agents = mappo_quantum.agents
    path = tmp_path / "mappo_q.pt"
    agents.save(path)
    seeds = [0, 1, 2]
    here = [{a: v.tolist() for a, v in agents.predict(_observations(SJ, s, max_cycles=50)).items()}
            for s in seeds]
    script = textwrap.dedent(f"""
        import json
        from qdrl_bench.marl_ctde import CTDEAgents
        from qdrl_envs.marl import make_parallel
        agents = CTDEAgents.load({str(path)!r})
        out = []
        for s in {seeds!r}:
            obs, _ = make_parallel({SJ!r}, max_cycles=50).reset(seed=s)
            out.append({{a: v.tolist() for a, v in agents.predict(obs).items()}})
        print("RESULT" + json.dumps(out))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    there = json.loads(line[len("RESULT"):])
    assert there == here
    # And in this process too: the reloaded agents equal the trained ones exactly.
    again = CTDEAgents.load(path)
    for k, v in agents.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_evaluation_returns_per_agent_and_team_and_is_seeded(mappo_quantum):
    agents = mappo_quantum.agents
    a = evaluate_ctde(agents, n_episodes=2, seed=7, max_cycles=10)
    b = evaluate_ctde(agents, n_episodes=2, seed=7, max_cycles=10)
    assert np.array_equal(a.returns, b.returns) and np.array_equal(a.team_returns,
                                                                   b.team_returns)
    assert a.agents == ("ap_0", "ap_1", "ap_2") and a.roles == ("tx", "tx", "jam")
    assert a.seeds == (7, 8) and list(a.lengths) == [10, 10]
    assert a.role_returns["tx"] == pytest.approx(a.returns[:, :2].mean())
    # Returns are the env's rewards summed: replay episode 0 by hand.
    env = make_parallel(SJ, max_cycles=10)
    obs, _ = env.reset(seed=7)
    total = dict.fromkeys(env.possible_agents, 0.0)
    team = 0.0
    while env.agents:
        obs, rewards, _, _, infos = env.step(agents.predict(obs))
        for k, r in rewards.items():
            total[k] += r
        team += infos["ap_0"]["team_reward"]
    assert a.returns[0] == pytest.approx([total[k] for k in a.agents])
    assert a.team_returns[0] == pytest.approx(team)
    assert np.isfinite(a.metrics["eval/secrecy_sum"]) and a.metrics["eval/secrecy_sum"] >= 0.0
    c = evaluate_ctde(agents, n_episodes=2, seed=8, max_cycles=10)
    assert not np.array_equal(c.returns, a.returns)
    with pytest.raises(ValueError, match="n_episodes"):
        evaluate_ctde(agents, n_episodes=0)


def test_mlp_family_matches_the_quantum_parameter_counts():
    for algo in ("mappo", "ippo"):
        q = CTDEAgents(CTDEConfig(SJ, algo, "quantum")).parameter_counts()
        cfg = CTDEConfig(SJ, algo, "mlp")
        m = CTDEAgents(cfg).parameter_counts()
        widths = matched_widths(cfg)
        env = make_parallel(SJ)
        for g, members in group_map(env).items():
            obs = env.observation_space(members[0]).shape[0]
            act = env.action_space(members[0]).shape[0]
            # One hidden unit more or less moves the count by (inputs + 1 + outputs).
            assert abs(m["actor"][g] - q["actor"][g]) <= (obs + 1 + act + 1) // 2 + 1, (algo, g)
            k, cin = (1, obs) if algo == "ippo" else (len(members), env.state_space.shape[0])
            assert abs(m["critic"][g] - q["critic"][g]) <= (cin + 1 + k + 1) // 2 + 1, (algo, g)
            assert m["actor_quantum"][g] == 0 and m["critic_quantum"][g] == 0
            assert widths["actor"][g] >= 1 and widths["critic"][g] >= 1


def test_ippo_mlp_on_slice_orchestration_trains_and_evaluates():
    res = train_ctde(SO, "ippo", family="mlp", total_steps=100, frames_per_batch=50,
                     minibatch_size=25, n_epochs=1, env_kwargs={"max_cycles": 20}, seed=1)
    agents = res.agents
    assert list(agents.groups) == ["agents"]
    initial = CTDEAgents(agents.config).state_dict()
    assert any(not torch.equal(v, initial[k]) for k, v in agents.state_dict().items())
    out = evaluate_ctde(agents, n_episodes=2, seed=0)
    assert set(out.mean_returns) == set(make_parallel(SO).possible_agents)
    assert set(out.role_returns) == {"agents"}
    assert np.isfinite(out.team_returns).all()
    # IPPO's critic reads each agent's own observation.
    obs_dim = make_parallel(SO).observation_space("cell_0").shape[0]
    x = torch.zeros(4, len(agents.groups["agents"]), obs_dim)
    assert agents.critics["agents"](x).shape == (4, len(agents.groups["agents"]), 1)


def test_training_is_reproducible_for_a_seed():
    kw = {"total_steps": 60, "frames_per_batch": 30, "minibatch_size": 15, "n_epochs": 1,
          "env_kwargs": {"max_cycles": 20}}
    a = train_ctde(SJ, "mappo", family="mlp", seed=4, **kw).agents.state_dict()
    b = train_ctde(SJ, "mappo", family="mlp", seed=4, **kw).agents.state_dict()
    c = train_ctde(SJ, "mappo", family="mlp", seed=5, **kw).agents.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_mappo_joint_observation_critic():
    agents = CTDEAgents(CTDEConfig(SJ, "mappo", "quantum", critic_input="joint_obs"))
    env = make_parallel(SJ)
    obs, _ = env.reset(seed=0)
    tx = torch.as_tensor(np.stack([obs["ap_0"], obs["ap_1"]]))[None]
    jam = torch.as_tensor(obs["ap_2"])[None, None]
    assert agents.critics["tx"].body.net.in_features == 3 * obs["ap_0"].shape[0]
    assert agents.critics["tx"](tx, jam).shape == (1, 2, 1)


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"env_id": "qdrl/NoSuchEnv-v0"}, "qdrl/NoSuchEnv-v0"),
    ({"env_id": "qdrl/SecrecyPowerControl-v1"}, "qdrl/SecrecyPowerControl-v1"),
    ({"env_id": SJ, "algorithm": "ppo2"}, "'ppo2'"),
    ({"env_id": SJ, "algorithm": "MAPPO"}, "'MAPPO'"),
    ({"env_id": SJ, "family": "transformer"}, "'transformer'"),
    ({"env_id": SJ, "critic_input": "global"}, "'global'"),
    ({"env_id": SJ, "total_steps": 0}, "total_steps"),
    ({"env_id": SJ, "minibatch_size": 600, "frames_per_batch": 500}, "minibatch_size=600"),
    ({"env_id": SJ, "lr": float("nan")}, "lr"),
])
def test_bad_config_raises_naming_the_value(kwargs, needle):
    with pytest.raises(ValueError) as info:
        CTDEConfig(**kwargs)
    assert needle in str(info.value)


def test_train_ctde_rejects_unknown_env_and_algorithm_before_training():
    with pytest.raises(ValueError, match="unknown multi-agent environment 'qdrl/Nope-v0'"):
        train_ctde("qdrl/Nope-v0", "mappo")
    with pytest.raises(ValueError, match=r"algorithm must be one of .*'sac'"):
        train_ctde(SJ, "sac")
    with pytest.raises(ValueError, match=r"family must be one of .*'quantumish'"):
        train_ctde(SJ, "ippo", family="quantumish")
    with pytest.raises(ValueError, match="n_aps"):
        train_ctde(SJ, "ippo", env_kwargs={"n_aps": 0}, total_steps=10, frames_per_batch=10,
                   minibatch_size=10)


def test_load_rejects_a_file_that_is_not_saved_agents(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not a saved CTDEAgents file"):
        CTDEAgents.load(path)
