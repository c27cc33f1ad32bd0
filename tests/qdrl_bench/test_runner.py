"""The runner end to end: the agent x env matrix, executors agreeing seed for seed, the CLI."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

import qdrl_envs
from qdrl_bench import registry
from qdrl_bench.cli import main
from qdrl_bench.executors import LocalExecutor
from qdrl_bench.runner import Progress, run_sweep
from qdrl_bench.spec import AgentSpec, EnvSpec, EvalSpec, SpecError, SweepSpec, parse_sweep
from qdrl_bench.store import InMemoryStore, SQLiteStore

SECRECY = "qdrl/SecrecyPowerControl-v1"


def test_matrix_every_agent_on_every_env() -> None:
    """Every registered agent x every registered env: a finished tiny run, or a reason why not.

    Every env and agent imports (they are hard dependencies), so every run finishes or is not
    applicable; a broken import fails the run and this test.
    """
    learners = registry.agent_entries()
    agents = (*(AgentSpec(name=n) for n in learners), AgentSpec(name="baselines"))
    envs = tuple(EnvSpec(id=e, max_episode_steps=6) for e in qdrl_envs.ENV_IDS)
    spec = SweepSpec(name="matrix", envs=envs, agents=agents, seeds=(0,), timesteps=48,
                     eval=EvalSpec(every=48, episodes=1))
    store = InMemoryStore()
    summary = run_sweep(spec, store=store, progress=False)
    assert summary.failures == []
    runs = store.list_runs()
    assert {r.key.env for r in runs} == set(qdrl_envs.ENV_IDS)
    for env_id in qdrl_envs.ENV_IDS:
        names = {r.key.agent for r in runs if r.key.env == env_id}
        assert names == set(learners) | set(registry.baselines_for(env_id)), env_id
    for rec in runs:
        where = f"{rec.key.agent} on {rec.key.env}"
        assert rec.status in ("finished", "not_applicable"), (where, rec.result.reason)
        if rec.status == "finished":
            assert rec.result.final_score is not None
            assert rec.result.wall_s > 0
            assert len(store.get_curve(rec.run_id)) >= 2
        else:
            assert rec.key.agent in learners and rec.result.reason, where
    secrecy = {r.key.agent: r for r in runs if r.key.env == SECRECY}
    assert secrecy["dqn"].result.adapter == "BoxToDiscrete"
    assert secrecy["ppo"].result.adapter is None
    assert secrecy["q-ppo"].status == "finished"
    assert secrecy["q-ppo"].result.params_quantum > 0
    assert secrecy["ppo"].result.params_quantum == 0


def test_a_baseline_of_another_env_is_not_applicable() -> None:
    spec = parse_sweep(f"name: b\ntimesteps: 8\neval: {{every: 8, episodes: 1}}\n"
                       f"envs: [{{id: CartPole-v1, max_episode_steps: 4}}, "
                       f"{{id: {SECRECY}, max_episode_steps: 4}}]\nagents: [oracle]\n")
    store = InMemoryStore()
    run_sweep(spec, store=store, progress=False)
    status = {r.key.env: r for r in store.list_runs()}
    assert status[SECRECY].status == "finished"
    assert status["CartPole-v1"].status == "not_applicable"
    assert "unknown baseline 'oracle' for CartPole-v1; choose from ['random']" in (
        status["CartPole-v1"].result.reason)
    with pytest.raises(registry.UnknownBaseline, match="unknown baseline 'oracle'"):
        registry.build_baseline("oracle", registry.make_env("CartPole-v1"), 0, {})
    assert issubclass(registry.UnknownBaseline, ValueError)


def test_a_broken_env_import_fails_loudly() -> None:
    import gymnasium as gym

    broken = "BrokenImport-v0"
    gym.register(broken, entry_point="qdrl_envs.no_such_module:NoSuchEnv")
    try:
        spec = parse_sweep(f"name: x\ntimesteps: 8\neval: {{every: 8, episodes: 1}}\n"
                           f"envs: [{broken}]\nagents: [ppo]\n")
        with pytest.raises(ModuleNotFoundError, match=r"qdrl_envs\.no_such_module"):
            run_sweep(spec, store=InMemoryStore(), progress=False)
        store = InMemoryStore()  # unchecked, the run itself fails with the error (not skipped)
        summary = run_sweep(spec, store=store, progress=False, check=False)
        (rec,) = store.list_runs()
        assert rec.status == "failed" and summary.statuses == {"failed": 1}
        assert "ModuleNotFoundError" in rec.result.reason
    finally:
        del gym.registry[broken]


def test_small_mlp_matches_quantum_count() -> None:
    env = registry.make_env("CartPole-v1")
    for algo in ("ppo", "dqn"):
        small, target = registry.matched_counts(algo, env, 256)
        one_more = registry._small_arch(algo, 1)  # the search space starts at width 1
        assert one_more
        # the computed width is within one hidden unit's worth of parameters of the target
        per_unit = 2 + env.observation_space.shape[0] + 1
        assert abs(small - target) <= per_unit * (2 if algo == "dqn" else 1), (algo, small,
                                                                               target)


TWO_RUNS = f"""\
name: two
seeds: [0, 1]
timesteps: 96
eval: {{every: 48, episodes: 2}}
envs:
  - id: {SECRECY}
    max_episode_steps: 8
agents:
  - name: q-ppo
    kwargs: {{n_steps: 32, batch_size: 16, policy_kwargs: {{n_layers: 1}}}}
"""


def _scores(store) -> dict[tuple[str, int], tuple]:
    out = {}
    for rec in store.list_runs():
        assert rec.status == "finished", rec.result and rec.result.reason
        curve = tuple((p.step, p.returns) for p in store.get_curve(rec.run_id))
        out[(rec.key.agent, rec.key.seed)] = (rec.result.final_score, curve)
    return out


@pytest.fixture(scope="module")
def inline_scores() -> dict:
    store = InMemoryStore()
    run_sweep(parse_sweep(TWO_RUNS), store=store, progress=False)
    return _scores(store)


def test_process_pool_matches_inline(inline_scores: dict) -> None:
    store = InMemoryStore()
    out = io.StringIO()
    executor = LocalExecutor(2)
    summary = run_sweep(parse_sweep(TWO_RUNS), store=store, executor=executor, progress=out)
    executor.close()
    assert summary.statuses == {"finished": 2}
    assert _scores(store) == inline_scores
    assert "2/2" in out.getvalue()


def test_ray_matches_inline(inline_scores: dict) -> None:
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    from qdrl_bench.executors import RayExecutor

    store = InMemoryStore()
    executor = RayExecutor(2)
    try:
        summary = run_sweep(parse_sweep(TWO_RUNS), store=store, executor=executor,
                            progress=False)
    finally:
        executor.close()
        ray.shutdown()
    assert not ray.is_initialized()
    assert summary.statuses == {"finished": 2}
    assert _scores(store) == inline_scores


def test_rerun_skips_and_config_change_is_new_run(tmp_path: Path) -> None:
    text = ("name: r\nseeds: 2\ntimesteps: 32\neval: {every: 32, episodes: 1}\n"
            "envs: [{id: CartPole-v1, max_episode_steps: 10}]\nagents: [random, ppo]\n")
    url = f"sqlite:///{tmp_path / 'r.db'}"
    first = run_sweep(parse_sweep(text), store=url, progress=False)
    assert first.statuses == {"finished": 4} and first.skipped == 0
    again = run_sweep(parse_sweep(text), store=url, progress=False)
    assert again.statuses == {} and again.skipped == 4
    changed = run_sweep(parse_sweep(text.replace("timesteps: 32", "timesteps: 48")), store=url,
                        progress=False)
    assert changed.statuses == {"finished": 4}
    store = SQLiteStore(tmp_path / "r.db")
    assert len(store.list_runs()) == 8
    store.close()


def test_progress_line() -> None:
    from qdrl_bench.spec import RunSpec

    out = io.StringIO()
    bar = Progress(2, 200, "p", stream=out)
    run = RunSpec("p", EnvSpec("E"), AgentSpec("a"), 0, 100, EvalSpec())
    bar.step(run.name, 50, 100)
    assert "steps 50/200" in bar.line()
    bar.run_done(run, "finished")
    assert "runs 1/2" in bar.line() and "steps 100/200" in bar.line()
    assert "p/E/a/0: finished" in out.getvalue()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: x\nenvs: [CartPole-v1, NoSuchEnv-v9]\nagents: [ppo]\n",
         r"sweep\.yaml:2: envs\[1\]\.id: unknown environment 'NoSuchEnv-v9'"),
        ("name: x\nenvs: [CartPole-v1]\nagents:\n  - ppo\n  - ppx\n",
         r"sweep\.yaml:5: agents\[1\]\.name: unknown agent 'ppx'; did you mean \['ppo'"),
        ("name: x\nenvs:\n  - id: Pendulum-v1\n    kwargs: {gravity: 3}\nagents: [ppo]\n",
         r"sweep\.yaml:3: envs\[0\]\.kwargs: Pendulum-v1 rejects \{'gravity': 3\}"),
        ("name: x\nenvs: [CartPole-v1]\nagents: [ppo]\ntimesteps: many\n",
         r"sweep\.yaml:4: timesteps: must be an integer"),
        ("name: x\nenvs: [CartPole-v1]\nagents:\n  - random\n  - name: ppo\n"
         "    kwargs: {n_stepz: 8}\n",
         r"sweep\.yaml:5: agents\[1\]\.kwargs\.n_stepz: unknown hyperparameter 'n_stepz' for PPO"),
        ("name: x\nenvs: [CartPole-v1]\nagents:\n  - name: dqn\n    kwargs: {batch_size: big}\n",
         r"sweep\.yaml:4: agents\[0\]\.kwargs\.batch_size: must be like its default 32"),
    ],
)
def test_cli_rejects_bad_sweeps(write_sweep, capsys: pytest.CaptureFixture[str], text: str,
                                match: str) -> None:
    import re

    path = write_sweep(text)
    assert main(["run", str(path), "--quiet", "--store", "memory://"]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err), err
    assert "Traceback" not in err


def test_unknown_names_raise_spec_errors(write_sweep) -> None:
    from qdrl_bench.spec import load_sweep

    spec = load_sweep(write_sweep("name: x\nenvs: [CartPole-v1]\nagents: [oracle]\n"))
    with pytest.raises(SpecError, match="unknown agent 'oracle'"):
        registry.check_sweep_names(spec)


def test_cli_refuses_corrupt_store_and_leaves_it(write_sweep, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"\x00garbage" * 64)
    path = write_sweep("name: x\nenvs: [CartPole-v1]\nagents: [random]\n")
    assert main(["run", str(path), "--quiet", "--store", f"sqlite:///{bad}"]) == 2
    assert "not a SQLite database" in capsys.readouterr().err
    assert bad.read_bytes() == b"\x00garbage" * 64


def test_cli_report_at_a_file_is_one_line_rc_2(write_sweep, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.db"
    path = write_sweep("name: x\ntimesteps: 8\nenvs: [CartPole-v1]\nagents: [random]\n"
                       "eval: {every: 8, episodes: 1}\n")
    assert main(["run", str(path), "--quiet", "--store", f"sqlite:///{db}"]) == 0
    capsys.readouterr()
    target = tmp_path / "a-file"
    target.write_text("keep me")
    assert main(["report", str(db), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qdrl-bench report: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and str(target) in err
    assert target.read_text() == "keep me"


def test_a_libraries_base_exception_fails_the_run_not_the_sweep(monkeypatch) -> None:
    class PanicException(BaseException):  # what pyo3 raises from Rust (qiskit's core)
        pass

    def panic(*args, **kwargs):
        raise PanicException("called `Option::unwrap()` on a `None` value")

    monkeypatch.setattr(registry, "build_agent", panic)
    spec = parse_sweep("name: p\ntimesteps: 8\neval: {every: 8, episodes: 1}\n"
                       "envs: [CartPole-v1]\nagents: [ppo, random]\n")
    store = InMemoryStore()
    run_sweep(spec, store=store, progress=False)
    status = {r.key.agent: r.status for r in store.list_runs()}
    assert status == {"ppo": "failed", "random": "finished"}
    (ppo,) = [r for r in store.list_runs() if r.key.agent == "ppo"]
    assert "PanicException" in ppo.result.reason


def test_cli_list_shows_envs_agents_adapters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--env", "CartPole-v1", "--env", "Pendulum-v1"]) == 0
    out = capsys.readouterr().out
    assert "q-ppo-hybrid" in out and "ppo-small" in out
    assert "PPO + QuantumActorCriticPolicy, linear encoder -> 4 qubits" in out
    assert "adapter for box      (ddpg/sac/td3): DiscreteToBox" in out
    assert "adapter for discrete (dqn): BoxToDiscrete" in out
    assert "baselines   random" in out
    assert main(["list", "--env", "NoSuchEnv-v9"]) == 2
    assert "unknown environment id(s) ['NoSuchEnv-v9']" in capsys.readouterr().err


def test_run_writes_sqlite_with_integrity(write_sweep, tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    path = write_sweep(f"name: w\nstore: sqlite:///{db}\nseeds: 1\ntimesteps: 16\n"
                       "eval: {every: 16, episodes: 1}\n"
                       "envs: [{id: CartPole-v1, max_episode_steps: 5}]\nagents: [random, a2c]\n")
    assert main(["run", str(path), "--quiet"], out=io.StringIO()) == 0
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM runs WHERE status='finished'").fetchone()[0] == 2
    conn.close()


def test_cli_perf_lists_and_rejects(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["perf"]) == 0
    assert "performance suite modules" in capsys.readouterr().out
    assert main(["perf", "no_such_bench"]) == 2
    assert "unknown perf module 'no_such_bench'" in capsys.readouterr().err


def test_adapter_kwargs_lift_the_cap() -> None:
    text = ("name: a\nseeds: [0]\ntimesteps: 16\neval: {every: 16, episodes: 1}\n"
            "envs: [{id: Pendulum-v1, max_episode_steps: 4}]\nagents:\n"
            "  - {name: dqn, label: dqn-capped, kwargs: {adapter: {max_actions: 4}}}\n"
            "  - {name: dqn, label: dqn-3, kwargs: {adapter: {levels: 3}}}\n"
            "  - {name: dqn, label: dqn-bad, kwargs: {adapter: 3}}\n")
    store = InMemoryStore()
    run_sweep(parse_sweep(text), store=store, progress=False)
    runs = {r.key.agent: r for r in store.list_runs()}
    assert runs["dqn-capped"].status == "not_applicable"
    assert "5**1 = 5 actions, above the cap max_actions=4" in runs["dqn-capped"].result.reason
    assert runs["dqn-3"].status == "finished"
    assert runs["dqn-3"].result.adapter == "BoxToDiscrete"
    assert runs["dqn-bad"].status == "failed"
    assert "kwargs.adapter must be a mapping" in runs["dqn-bad"].result.reason


@pytest.mark.parametrize("name", ["dqn", "td3", "sac", "q-dqn", "q-td3"])
def test_parameter_counts_leave_out_target_networks(name: str) -> None:
    """Off-policy agents hold target copies; the reported count is only what is trained."""
    import gymnasium as gym

    from qdrl_envs.wrappers import adapt_action_space

    env = gym.make("Pendulum-v1")
    if name.endswith("dqn"):
        env, _ = adapt_action_space(env, "discrete")
    model, counts = registry.build_agent(name, env, seed=0, timesteps=64)
    policy = model.policy
    everything = sum(p.numel() for p in policy.parameters())
    targets = sum(p.numel() for n, c in policy.named_children() if n.endswith("_target")
                  for p in c.parameters())
    assert targets > 0
    assert counts["quantum"] + counts["classical"] == everything - targets
    assert (counts["quantum"] > 0) == name.startswith("q-")


def test_part_of_a_sweep_runs_alone_and_joins_the_whole(write_sweep, tmp_path: Path) -> None:
    db = tmp_path / "part.db"
    path = write_sweep(f"name: part\nstore: sqlite:///{db}\nseeds: 1\ntimesteps: 16\n"
                       "eval: {every: 16, episodes: 1}\n"
                       "envs: [{id: CartPole-v1, max_episode_steps: 5}]\nagents: [random, a2c]\n")
    out = io.StringIO()
    assert main(["run", str(path), "--quiet", "--agent", "random"], out=out) == 0
    assert "sweep part: 1 runs, 0 already done" in out.getvalue()
    out = io.StringIO()
    assert main(["run", str(path), "--quiet"], out=out) == 0
    assert "sweep part: 2 runs, 1 already done" in out.getvalue()


def test_select_part_keeps_the_conditions_of_the_selected_agents() -> None:
    from qdrl_bench.runner import check_conditions, select_part
    from qdrl_bench.spec import load_sweep

    spec = load_sweep(Path(registry.__file__).parent / "configs" / "robustness.yaml")
    part = select_part(spec, ["qdrl/SemanticSlicing-v1"], ["q-ppo-4q", "baselines"])
    assert [e.id for e in part.envs] == ["qdrl/SemanticSlicing-v1"]
    assert [a.label for a in part.agents] == ["q-ppo-4q", "baselines"]
    assert part.name == spec.name and part.store == spec.store
    assert len(part.eval.conditions) == len(spec.eval.conditions)
    classical = select_part(spec, agents=["ppo-small"])  # executor conditions need a circuit
    assert {c.kind for c in classical.eval.conditions} == {"adversarial"}
    check_conditions(part)
    check_conditions(classical)
    with pytest.raises(SpecError, match="--env nope: not in the sweep"):
        select_part(spec, envs=["nope"])
    with pytest.raises(SpecError, match="--agent q-ppo-x: not in the sweep"):
        select_part(spec, agents=["q-ppo-x"])
    with pytest.raises(SpecError, match="run on none of the selected envs"):
        select_part(spec, ["qdrl/SemanticSlicing-v1"], ["q-ppo"])
