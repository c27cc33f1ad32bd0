from __future__ import annotations

from pathlib import Path

import pytest

import qdrl_envs
from qdrl_bench.spec import SpecError, expand_runs, load_sweep, parse_sweep

GOOD = """\
name: t
seeds: [0, 3]
timesteps: 128
eval: {every: 64, episodes: 2}
executor: {kind: local, workers: 2}
envs:
  - CartPole-v1
  - id: Pendulum-v1
    kwargs: {g: 9.0}
    max_episode_steps: 50
agents:
  - ppo
  - name: a2c
    kwargs: {n_steps: 8}
    timesteps: 64
  - baselines
"""


def test_good_sweep_parses_and_expands() -> None:
    spec = parse_sweep(GOOD, "good.yaml")
    assert spec.name == "t" and spec.seeds == (0, 3) and spec.timesteps == 128
    assert spec.store == "sqlite:///results/t.db"
    assert spec.executor.workers == 2 and spec.eval.every == 64 and spec.eval.episodes == 2
    assert spec.envs[1].kwargs == {"g": 9.0} and spec.envs[1].max_episode_steps == 50
    runs = expand_runs(spec, baselines_of=lambda env_id: ["random"])
    assert len(runs) == 2 * 3 * 2
    a2c = [r for r in runs if r.agent.name == "a2c"]
    assert {r.timesteps for r in a2c} == {64}
    assert len({r.config_hash for r in runs}) == len(runs)
    assert runs[0].name == "t/CartPole-v1/ppo/0"


def test_an_agent_runs_only_on_its_envs() -> None:
    text = GOOD.replace("  - baselines\n",
                        "  - name: sac\n    envs: [Pendulum-v1]\n  - baselines\n")
    spec = parse_sweep(text, "good.yaml")
    assert spec.agents[2].envs == ("Pendulum-v1",)
    runs = expand_runs(spec, baselines_of=lambda env_id: ["random"])
    assert {r.env.label for r in runs if r.agent.name == "sac"} == {"Pendulum-v1"}
    assert len(runs) == 2 * 3 * 2 + 2
    assert spec.agents[0].envs is None and spec.agents[0].runs_on("anything")


def test_config_change_changes_hash() -> None:
    a = expand_runs(parse_sweep(GOOD))[0]
    b = expand_runs(parse_sweep(GOOD.replace("timesteps: 128", "timesteps: 256")))[0]
    c = expand_runs(parse_sweep(GOOD))[0]
    assert a.config_hash != b.config_hash
    assert a.config_hash == c.config_hash


def test_registered_expands_to_every_qdrl_env() -> None:
    spec = parse_sweep("name: r\nenvs: registered\nagents: [random]\n")
    assert tuple(e.id for e in spec.envs) == qdrl_envs.ENV_IDS


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: x\nenvs: [a\n", r"^s\.yaml:3:1: malformed YAML"),
        ("name: x\n  envs: [a]\n", r"^s\.yaml:2:\d+: malformed YAML"),
        ("", r"^s\.yaml:1: the sweep file is empty"),
        ("- a\n", r"^s\.yaml:1: <top>: must be a mapping"),
        ("name: x\nagents: [ppo]\n", r"missing required key 'envs'"),
        ("name: x\nenvs: [a]\nagents: [ppo]\nseed: 3\n", r"^s\.yaml:4: seed: unknown key"),
        ("name: x\nenvs: [a]\nagents: [ppo]\nseeds: two\n",
         r"^s\.yaml:4: seeds: must be an integer, got str 'two'"),
        ("name: x\nenvs: [a]\nagents: [ppo]\nseeds: [1, 1]\n", r"seeds must be distinct"),
        ("name: x\nenvs: [a]\nagents: [ppo]\ntimesteps: 0\n", r"timesteps: must be >= 1"),
        ("name: x\nenvs: [a]\nagents: [ppo]\ntimesteps: true\n", r"must be an integer"),
        ("name: x\nenvs: [a]\nagents: [ppo]\nexecutor: {kind: slurm}\n",
         r"^s\.yaml:4: executor\.kind: must be one of \['local', 'ray'\]"),
        ("name: x\nenvs: [a]\nagents: [ppo]\nexecutor: {address: auto}\n",
         r"only the ray executor takes an address"),
        ("name: x\nenvs: [a]\nagents:\n  - ppo\n  - name: a2c\n    kwargs: [1]\n",
         r"^s\.yaml:6: agents\[1\]\.kwargs: must be a mapping of keyword arguments"),
        ("name: x\nenvs: [a]\nagents:\n  - ppo\n  - {kwargs: {}}\n",
         r"^s\.yaml:5: agents\[1\]: missing required key 'name'"),
        ("name: x\nenvs:\n  - id: a\n    kwarg: {}\nagents: [ppo]\n",
         r"^s\.yaml:4: envs\[0\]\.kwarg: unknown key 'kwarg'"),
        ("name: x\nenvs: [a, a]\nagents: [ppo]\n", r"duplicate entry 'a'"),
        ("name: a/b\nenvs: [a]\nagents: [ppo]\n", r"must not contain slashes"),
        ("name: x\nenvs: []\nagents: [ppo]\n", r"envs: must be a non-empty list"),
        ("name: x\nenvs: [3]\nagents: [ppo]\n", r"envs\[0\]: must be a mapping"),
        ("name: x\nenvs: [a]\nagents:\n  - {name: ppo, envs: [b]}\n",
         r"^s\.yaml:4: agents\[0\]\.envs: unknown env label\(s\) \['b'\]; the sweep's envs "
         r"are \['a'\]"),
        ("name: x\nenvs: [a]\nagents:\n  - {name: ppo, envs: a}\n",
         r"agents\[0\]\.envs: must be a non-empty list of env labels"),
        ("name: x\nenvs: [a]\nagents:\n  - {name: ppo, envs: [3]}\n",
         r"agents\[0\]\.envs\[0\]: must be a non-empty string"),
    ],
)
def test_bad_sweeps_name_key_and_line(text: str, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        parse_sweep(text, "s.yaml")


def test_alias_bombs_and_recursive_aliases_are_refused_before_expansion() -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    bomb = "name: x\nenvs: [a]\nagents: [ppo]\n" + "\n".join(levels) + "\n"  # 10**9 leaves
    with pytest.raises(SpecError, match=r"^s\.yaml:4: the value here is reused by an alias"):
        parse_sweep(bomb, "s.yaml")  # refused before expansion (expanded: gigabytes)
    with pytest.raises(SpecError, match="anchors and aliases"):
        parse_sweep("name: x\nenvs: &e [a, *e]\nagents: [ppo]\n", "s.yaml")
    with pytest.raises(SpecError, match="anchors and aliases"):
        parse_sweep("name: x\nenvs: [a]\nagents: &g [ppo]\nmore: *g\n", "s.yaml")


@pytest.mark.parametrize(("seeds", "match"), [
    ("[0, 4294967296]", r"seeds\[1\]: must be <= 4294967295, got 4294967296"),
    ("[-1]", r"seeds\[0\]: must be >= 0"),
    ("100001", r"seeds: must be <= 10000, got 100001"),
    ("[" + ", ".join(map(str, range(10_001))) + "]", r"seeds: at most 10000 seeds, got 10001"),
])
def test_seeds_are_bounded(seeds: str, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        parse_sweep(f"name: x\nenvs: [a]\nagents: [ppo]\nseeds: {seeds}\n", "s.yaml")
    assert parse_sweep("name: x\nenvs: [a]\nagents: [ppo]\nseeds: [4294967295]\n").seeds \
        == (4294967295,)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the sweep file"):
        load_sweep(tmp_path / "missing.yaml")
    p = tmp_path / "ok.yaml"
    p.write_text(GOOD)
    assert load_sweep(p).path == str(p)
