"""The sweep-scaling benchmark's functions (behaviour only; timings are not asserted)."""

from __future__ import annotations

from qdrl_bench.perf import sweep_scaling

SWEEP = """
name: scaling-tiny
store: sqlite:///unused.db
seeds: 2
timesteps: 64
eval: {every: 64, episodes: 1}
envs:
  - id: qdrl/SecrecyPowerControl-v1
    max_episode_steps: 8
agents:
  - name: ppo
    kwargs: {n_steps: 32, batch_size: 16, n_epochs: 1}
  - baselines
"""


def test_time_sweep_returns_every_finished_score(write_sweep) -> None:
    spec = sweep_scaling.load_sweep(write_sweep(SWEEP))
    wall, scores = sweep_scaling.time_sweep(spec, "local", 1)
    assert wall > 0
    agents = {agent for _, agent, _ in scores}
    assert {"ppo", "random", "full-power", "oracle"} <= agents
    assert len(scores) == 2 * len(agents)


def test_main_prints_ratio_and_the_pool_agrees_score_for_score(write_sweep, capsys) -> None:
    assert sweep_scaling.main(["--sweep", str(write_sweep(SWEEP)), "--no-ray"]) == 0
    out = capsys.readouterr().out
    assert "local x1 / local x2:" in out and "target >= 1.8x" in out
    assert "identical to local x1: True" in out
    assert "identical to local x1: False" not in out
