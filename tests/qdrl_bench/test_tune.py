"""qdrl-bench tune: equal budgets per agent, files the registry loads, resume after SIGKILL."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from qdrl_bench import execute, registry, tune
from qdrl_bench.cli import main
from qdrl_bench.hyperparams import describe_settings, hyperparams_for, load_hyperparams
from qdrl_bench.spec import SpecError, parse_sweep
from qdrl_bench.store import FAILED, FINISHED, NOT_APPLICABLE, EvalPoint, RunResult
from qdrl_bench.tune import SpaceContext, sample_params, starting_params, study_name, tune_sweep
from tests.qdrl_bench.conftest import REPO, cli

SWEEP = """\
name: {name}
timesteps: 256
eval: {{every: 128, episodes: 2}}
envs:
  - id: CartPole-v1
    max_episode_steps: 20
agents:
{agents}
"""

DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def _sweep(name: str = "tiny", agents: str = "  - ppo\n  - a2c\n  - random") -> str:
    return SWEEP.format(name=name, agents=agents)


def _study(db: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def test_tiny_study_writes_files_the_registry_loads(tmp_path: Path) -> None:
    spec = parse_sweep(_sweep(), source="tiny.yaml")
    db, out = tmp_path / "tune.db", tmp_path / "tuned"
    lines: list[str] = []

    class Lines:
        def write(self, text: str) -> None:
            lines.append(text)

        def flush(self) -> None:
            pass

    summary = tune_sweep(spec, trials=2, storage=f"sqlite:///{db}", out_dir=out,
                         progress=Lines())  # type: ignore[arg-type]
    assert [(r.agent, r.status) for r in summary.studies] == [("ppo", "tuned"), ("a2c", "tuned")]
    assert sum("trial" in x and "finished" in x for x in lines) == 4
    seeds = {}
    for res in summary.studies:  # equal budgets: same trials, steps and seeds for each agent
        assert res.complete + res.pruned == 2 and res.failed == 0
        trials = _study(db, study_name("tiny", "CartPole-v1", res.agent)).trials
        assert all(t.user_attrs["curve"][-1][0] <= 256 for t in trials)
        seeds[res.agent] = [t.user_attrs["seed"] for t in trials]

        settings = registry.train_settings(res.agent, "CartPole-v1", {}, directory=out)
        best = res.best_settings
        assert settings.source.startswith(str(out / f"{res.agent}.yml"))
        assert settings.n_envs == best["n_envs"]
        assert (settings.normalize is not None) == bool(best["normalize"])
        algo = {k: v for k, v in best.items() if k not in ("n_envs", "normalize")}
        assert dict(settings.algo_kwargs) == algo
        assert settings.algo_kwargs["learning_rate"] == res.best_params["learning_rate"]
        assert hyperparams_for(res.agent, "CartPole-v1", directory=out).algo_kwargs == algo
        algo_name = registry.get_agent(res.agent).algo
        assert load_hyperparams(out / f"{res.agent}.yml", algo_name)["CartPole-v1"]
        header = (out / f"{res.agent}.yml").read_text().splitlines()[:3]
        assert all(h.startswith("# ") for h in header)
        assert any(f"study tiny/CartPole-v1/{res.agent}" in h and "2 complete" in h
                   for h in header)
    assert seeds["ppo"] == seeds["a2c"] == [0, 1]
    assert "random" not in {r.agent for r in summary.studies}
    doc = json.loads((out / "tuning.json").read_text())
    assert doc["timesteps_per_trial"] == 256 and doc["trials_per_study"] == 2
    assert {(s["agent"], s["trials"]["complete"] + s["trials"]["pruned"]) for s in doc["studies"]} \
        == {("ppo", 2), ("a2c", 2)}
    assert doc["studies"][0]["best_params"] == summary.studies[0].best_params
    # The report names the file, line and the trials behind a tuned entry.
    note = describe_settings("ppo", "CartPole-v1", directory=out)
    assert note.startswith("ppo.yml:") and note.endswith(", tuned: 2 trials (2 complete, "
                                                         "0 pruned) x 256 steps"), note


def test_entries_of_envs_not_tuned_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "tuned"
    out.mkdir()
    (out / "ppo.yml").write_text("# hand-set\nqdrl/DTSyncAoI-v0:\n  n_envs: 4\n  "
                                 "n_timesteps: 5000\n  gamma: 0.9\n  normalize: true\n"
                                 "CartPole-v1:\n  gamma: 0.5\n")
    tune_sweep(parse_sweep(_sweep("k", "  - ppo")), trials=1,
               storage=f"sqlite:///{tmp_path / 'k.db'}", out_dir=out, progress=False)
    entries = load_hyperparams(out / "ppo.yml", "ppo")
    kept = entries["qdrl/DTSyncAoI-v0"]
    assert (kept.n_envs, kept.n_timesteps, kept.normalize, kept.algo_kwargs) == (
        4, 5000, {}, {"gamma": 0.9})
    assert "learning_rate" in entries["CartPole-v1"].algo_kwargs  # tuned now, not kept
    assert "Kept from the file this one replaced (not tuned here): qdrl/DTSyncAoI-v0." \
        in (out / "ppo.yml").read_text()
    # A second invocation on another agent keeps the first one's study in tuning.json.
    tune_sweep(parse_sweep(_sweep("k", "  - a2c").replace("timesteps: 256", "timesteps: 128")
                           .replace("every: 128", "every: 64")), trials=1,
               storage=f"sqlite:///{tmp_path / 'k.db'}", out_dir=out, progress=False)
    doc = json.loads((out / "tuning.json").read_text())
    assert [(s["agent"], s.get("timesteps_per_trial", doc["timesteps_per_trial"]))
            for s in doc["studies"]] == [("a2c", 128), ("ppo", 256)]
    assert describe_settings("ppo", "CartPole-v1", directory=out).endswith("x 256 steps")
    assert describe_settings("a2c", "CartPole-v1", directory=out).endswith("x 128 steps")


def test_part_of_a_sweep_tunes_the_whole_sweeps_studies(tmp_path: Path, write_sweep,
                                                         capsys) -> None:
    sweep = write_sweep(_sweep("part"), "part.yaml")
    db, out = tmp_path / "part.db", tmp_path / "out"
    assert main(["tune", str(sweep), "--trials", "1", "--agent", "a2c", "--storage",
                 f"sqlite:///{db}", "--out", str(out), "--quiet"]) == 0
    assert [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{db}")] == [
        study_name("part", "CartPole-v1", "a2c")]
    assert sorted(p.name for p in out.iterdir()) == ["a2c.yml", "tuning.json"]
    # The rest of the sweep later: the a2c study is found complete and not rerun.
    assert main(["tune", str(sweep), "--trials", "1", "--storage", f"sqlite:///{db}",
                 "--out", str(out), "--quiet"]) == 0
    assert len(_study(db, study_name("part", "CartPole-v1", "a2c")).trials) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a2c.yml", "ppo.yml", "tuning.json"]
    capsys.readouterr()
    assert main(["tune", str(sweep), "--trials", "1", "--agent", "sac", "--storage",
                 f"sqlite:///{db}", "--out", str(out)]) == 2
    assert "--agent sac: not in the sweep" in capsys.readouterr().err


def _popen_tune(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "qdrl_bench.cli", "tune", *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, killed whole


def test_sigkill_then_resume_runs_only_the_missing_trials(tmp_path: Path) -> None:
    sweep = tmp_path / "kill.yaml"
    sweep.write_text(_sweep("kill", "  - a2c"))  # a2c: the cheapest trials
    db, out = tmp_path / "kill.db", tmp_path / "tuned"
    args = (str(sweep), "--trials", "2", "--storage", f"sqlite:///{db}", "--out", str(out))
    name = study_name("kill", "CartPole-v1", "a2c")

    proc = _popen_tune(*args)
    assert proc.stdout is not None
    for line in proc.stdout:  # wait on the event itself: the first finished trial
        if "trial" in line and "finished" in line:
            break
    else:
        raise AssertionError(f"no trial finished: {proc.communicate()}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)

    before = _study(db, name).trials
    done_before = [t for t in before if t.state in DONE]
    running_before = [t for t in before if t.state == TrialState.RUNNING]
    assert len(done_before) == 1, "the kill landed outside the study"
    first = done_before[0]
    assert first.number == 0 and not (out / "a2c.yml").exists()

    again = cli("tune", *args)
    assert again.returncode == 0, again.stderr
    if running_before:
        assert "left running by a killed process marked failed" in again.stdout
    after = _study(db, name).trials
    states = [t.state for t in after]
    assert sum(s in DONE for s in states) == 2
    assert states.count(TrialState.FAIL) == len(running_before)
    assert TrialState.RUNNING not in states
    kept = after[0]  # trial 0 untouched, not redone: same params, value and finish time
    assert (kept.state, kept.params, kept.value, kept.datetime_complete) == \
        (first.state, first.params, first.value, first.datetime_complete)
    assert all(t.params != first.params for t in after[1:])
    assert [t.number for t in after] == list(range(len(after)))
    assert registry.train_settings("a2c", "CartPole-v1", {}, directory=out).source


def test_bad_input_names_what_is_wrong(tmp_path: Path, write_sweep, capsys) -> None:
    def run(*argv: str) -> str:
        assert main(["tune", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("qdrl-bench tune: error: ") and err.count("\n") == 1, err
        return err

    out = tmp_path / "out"
    db = f"sqlite:///{tmp_path / 'bad.db'}"
    bad_agent = write_sweep(_sweep("bad", "  - ppo\n  - ppoo"), "bad.yaml")
    err = run(str(bad_agent), "--trials", "2", "--storage", db, "--out", str(out))
    assert "agents[1].name" in err and "unknown agent 'ppoo'" in err and "bad.yaml:9:" in err

    good = write_sweep(_sweep("good", "  - ppo"), "good.yaml")
    err = run(str(good), "--trials", "0", "--storage", db, "--out", str(out))
    assert "--trials must be >= 1, got 0" in err
    err = run(str(good), "--trials", "1", "--confirm", "1", "--confirm-seeds", "0",
              "--storage", db, "--out", str(out))
    assert "--confirm-seeds must be >= 1, got 0" in err

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    err = run(str(good), "--trials", "1", "--storage", db, "--out", str(blocker / "out"))
    assert f"out dir {blocker / 'out'}: cannot write there" in err
    assert not out.exists()

    per_agent = write_sweep(_sweep("pa", "  - ppo\n  - name: a2c\n    timesteps: 512"), "pa.yaml")
    err = run(str(per_agent), "--trials", "1", "--storage", db, "--out", str(out))
    assert "agents[1].timesteps" in err and "256" in err

    with pytest.raises(ValueError, match="trials must be an integer >= 1"):
        tune_sweep(parse_sweep(_sweep()), trials=0, storage=db, out_dir=out)
    with pytest.raises(SpecError, match="no learning agent"):
        tune_sweep(parse_sweep(_sweep("b", "  - random")), trials=1, storage=db, out_dir=out)
    marl = _sweep("m", "  - q-mappo").replace("CartPole-v1", "qdrl/SecrecyJamming-v0")
    with pytest.raises(SpecError, match=r"envs\[0\]\.id: qdrl/SecrecyJamming-v0 is a multi-agent"):
        tune_sweep(parse_sweep(marl), trials=1, storage=db, out_dir=out)


def test_a_study_refuses_another_budget(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'budget.db'}"
    study = optuna.create_study(study_name=study_name("good", "CartPole-v1", "ppo"), storage=db)
    study.set_user_attr("config", {"timesteps": 999})
    with pytest.raises(ValueError, match=r"another .*timesteps.*--storage"):
        tune_sweep(parse_sweep(_sweep("good", "  - ppo")), trials=1, storage=db,
                   out_dir=tmp_path / "out", progress=False)
    assert not study.trials


def _fake_runs(monkeypatch, score_of, status: str = FINISHED) -> list[tuple[int, int]]:
    """Replace training by a curve of ``score_of(seed)`` at steps 128 and 256 (0 at step 0)."""
    calls: list[tuple[int, int]] = []

    def fake(run, *, on_eval=None):
        if status != FINISHED:
            calls.append((run.seed, 0))
            return RunResult(status=status, reason=f"{status} on purpose")
        curve = []
        for step in (0, 128, 256):
            curve.append(EvalPoint(step=step, mean=score_of(run.seed) if step else 0.0, std=0.0))
            if not on_eval(step, curve[-1].mean):
                break
        calls.append((run.seed, curve[-1].step))
        return RunResult(status=FINISHED, final_score=curve[-1].mean, curve=tuple(curve),
                         metrics={"score/last_evals": curve[-1].mean})

    monkeypatch.setattr(execute, "execute_run", fake)
    return calls


def test_median_pruner_stops_a_bad_trial_which_counts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tune, "_first_update_step", lambda *a: 100)  # before step 128
    calls = _fake_runs(monkeypatch, lambda seed: 1.0 if seed == 1 else 10.0)
    summary = tune_sweep(parse_sweep(_sweep("p", "  - ppo")), trials=3,
                         storage=f"sqlite:///{tmp_path / 'p.db'}", out_dir=tmp_path / "out",
                         progress=False, n_startup_trials=1)
    assert calls == [(0, 256), (1, 128), (2, 256)]  # training stopped at the pruned evaluation
    trials = _study(tmp_path / "p.db", study_name("p", "CartPole-v1", "ppo")).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED,
                                         TrialState.COMPLETE]
    assert trials[1].user_attrs["pruned_at"] == 128 and 0 not in trials[0].intermediate_values
    res = summary.studies[0]
    assert (res.complete, res.pruned, res.failed, res.best_value) == (2, 1, 0, 10.0)


def test_evaluations_before_the_first_update_are_not_pruned(tmp_path: Path,
                                                           monkeypatch) -> None:
    first_update_step = tune._first_update_step
    monkeypatch.setattr(tune, "_first_update_step", lambda *a: 200)  # after step 128
    calls = _fake_runs(monkeypatch, lambda seed: 1.0 if seed == 1 else 10.0)
    tune_sweep(parse_sweep(_sweep("w", "  - ppo")), trials=3,
               storage=f"sqlite:///{tmp_path / 'w.db'}", out_dir=tmp_path / "out",
               progress=False, n_startup_trials=1)
    assert calls == [(0, 256), (1, 256), (2, 256)]  # trial 1 was bad only from step 256 on
    trials = _study(tmp_path / "w.db", study_name("w", "CartPole-v1", "ppo")).trials
    assert all(128 not in t.intermediate_values for t in trials)
    # The first update: one rollout of every row for PPO, learning_starts off-policy.
    ctx = SpaceContext(algo="ppo", family="classical", n_envs=16, timesteps=50_000)
    agent = parse_sweep(_sweep("w", "  - ppo")).agents[0]
    assert first_update_step(ctx, agent, "qdrl/DTSyncAoI-v0", {"n_steps": 64}) == 64 * 16
    sac = dataclasses.replace(ctx, algo="sac")
    agent = parse_sweep(_sweep("w", "  - sac")).agents[0]
    assert first_update_step(sac, agent, "Pendulum-v1", {"learning_starts": 500}) == 500


def test_failing_and_inapplicable_agents_stop_their_study(tmp_path: Path, monkeypatch) -> None:
    spec = parse_sweep(_sweep("f", "  - ppo"))
    calls = _fake_runs(monkeypatch, lambda seed: 0.0, status=FAILED)
    res = tune_sweep(spec, trials=2, storage=f"sqlite:///{tmp_path / 'f.db'}",
                     out_dir=tmp_path / "out", progress=False).studies[0]
    assert (res.status, res.failed, len(calls)) == ("gave_up", 2, 2)
    assert "failed on purpose" in res.reason
    assert not (tmp_path / "out" / "ppo.yml").exists()
    assert json.loads((tmp_path / "out" / "tuning.json").read_text())["studies"][0]["status"] \
        == "gave_up"

    calls = _fake_runs(monkeypatch, lambda seed: 0.0, status=NOT_APPLICABLE)
    res = tune_sweep(spec, trials=2, storage=f"sqlite:///{tmp_path / 'n.db'}",
                     out_dir=tmp_path / "out", progress=False).studies[0]
    assert (res.status, len(calls)) == ("not_applicable", 1)


@pytest.mark.parametrize(("algo", "family", "n_envs"), [
    ("ppo", "classical", 3), ("ppo", "quantum", 16), ("a2c", "hybrid", 1),
    ("dqn", "classical", 1), ("sac", "quantum", 2), ("td3", "small", 1)])
def test_search_spaces_stay_valid(algo: str, family: str, n_envs: int) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    ctx = SpaceContext(algo=algo, family=family, n_envs=n_envs, timesteps=1024)
    base = {"policy_kwargs": {"n_qubits": 3}, "gamma": 0.5}
    for _ in range(25):
        kw = sample_params(study.ask(), ctx, base)
        pk = kw["policy_kwargs"]
        assert pk["n_qubits"] == 3  # the sweep's other policy options stay
        assert kw["gamma"] != 0.5  # sampled values win over the sweep's
        assert ("n_layers" in pk) == (family in ("quantum", "hybrid"))
        assert ("net_arch" in pk) == (family == "classical")
        assert "n_envs" not in kw
        if algo in ("ppo", "a2c"):
            assert kw["n_steps"] * n_envs <= 1024
        if algo == "ppo":
            assert (kw["n_steps"] * n_envs) % kw["batch_size"] == 0 and kw["batch_size"] > 1
        if "learning_starts" in kw:
            assert kw["learning_starts"] <= 256


@pytest.mark.parametrize(("algo", "family"), [
    ("ppo", "classical"), ("ppo", "hybrid"), ("dqn", "classical"), ("sac", "quantum")])
def test_starting_params_are_the_file_settings_and_sb3_defaults(algo: str, family: str) -> None:
    ctx = SpaceContext(algo=algo, family=family, n_envs=16, timesteps=100_000)
    settings = registry.TrainSettings(
        algo_kwargs={"gamma": 0.9, "policy_kwargs": {"n_layers": 3}}, n_envs=16,
        normalize={})
    start = starting_params(ctx, settings)
    assert start["gamma"] == 0.9 and start["normalize" if algo == "ppo" else "gamma"] in (True, 0.9)
    defaults = {"ppo": {"learning_rate": 3e-4, "n_epochs": 10, "clip_range": 0.2,
                        "gae_lambda": 0.95, "ent_coef": 1e-8, "n_steps": 2048},
                "dqn": {"learning_rate": 1e-4, "batch_size": 32, "train_freq": 4,
                        "target_update_interval": 10000, "learning_starts": 100},
                "sac": {"learning_rate": 3e-4, "batch_size": 256, "tau": 0.005,
                        "learning_starts": 100, "train_freq": 1}}[algo]
    assert {k: start[k] for k in defaults} == defaults
    assert start.get("net_arch") == ("small" if family == "classical" else None)
    assert start.get("n_layers") == (3 if family in ("quantum", "hybrid") else None)
    # Replaying the point through the search space gives back exactly these values.
    study = optuna.create_study()
    study.enqueue_trial(start)
    kw = sample_params(study.ask(), ctx)
    assert kw["gamma"] == 0.9 and kw["learning_rate"] == defaults["learning_rate"]


def test_first_trial_of_a_study_is_the_starting_point(tmp_path: Path) -> None:
    spec = parse_sweep(_sweep(agents="  - ppo"), source="tiny.yaml")
    db = tmp_path / "tune.db"
    tune_sweep(spec, trials=1, storage=f"sqlite:///{db}", out_dir=tmp_path / "out",
               progress=False)
    (trial,) = _study(db, study_name("tiny", "CartPole-v1", "ppo")).trials
    settings = registry.train_settings("ppo", "CartPole-v1", {})
    ctx = SpaceContext(algo="ppo", family="classical", n_envs=settings.n_envs, timesteps=256)
    assert trial.user_attrs["start"] is True
    start = starting_params(ctx, settings)
    assert "n_steps" not in start  # SB3's 2048 does not fit 256 steps: left to the sampler
    assert {k: trial.params[k] for k in start} == start


def _fake_by_settings(monkeypatch, score: dict[int, Callable[[int], float]],
                      fail: frozenset[tuple[int, int]] = frozenset()) -> list[tuple[int, int]]:
    """Replace training by a flat curve whose value depends on the settings and the seed.

    The ``k``-th distinct kwargs seen (trial ``k`` here, as trials run in order) scores
    ``score[k](seed)``; ``(k, seed)`` in ``fail`` makes that run fail. Returns the
    ``(settings index, seed)`` of every run made.
    """
    seen: list[str] = []
    calls: list[tuple[int, int]] = []

    def fake(run, *, on_eval=None):
        key = json.dumps(run.agent.kwargs, sort_keys=True, default=str)
        if key not in seen:
            seen.append(key)
        k = seen.index(key)
        calls.append((k, run.seed))
        if (k, run.seed) in fail:
            return RunResult(status=FAILED, reason="failed on purpose\nsecond line")
        value = score[k](run.seed)
        curve = (EvalPoint(step=0, mean=0.0, std=0.0), EvalPoint(step=256, mean=value, std=0.0))
        for p in curve:
            if on_eval is not None:
                on_eval(p.step, p.mean)
        return RunResult(status=FINISHED, final_score=value, curve=curve,
                         metrics={"score/last_evals": value})

    monkeypatch.setattr(execute, "execute_run", fake)
    return calls


def test_confirmed_finalists_choose_on_several_seeds(tmp_path: Path, monkeypatch) -> None:
    # Trial 1 is lucky on its own seed (10) and poor on any other (1); the starting trial 0
    # scores 5 on every seed: one seed picks trial 1, three seeds pick trial 0.
    C0, C1 = tune.confirm_seed(0, 0), tune.confirm_seed(0, 1)
    score = {0: lambda s: 5.0, 1: lambda s: 10.0 if s == 1 else 1.0, 2: lambda s: 3.0}
    calls = _fake_by_settings(monkeypatch, score)
    spec = parse_sweep(_sweep("c", "  - ppo"))
    db, out = tmp_path / "c.db", tmp_path / "out"
    kw = dict(trials=3, storage=f"sqlite:///{db}", out_dir=out, progress=False)

    plain = tune_sweep(spec, **kw).studies[0]
    assert (plain.best_trial, plain.best_value, plain.best_seeds) == (1, 10.0, 1)
    assert calls == [(0, 0), (1, 1), (2, 2)]

    res = tune_sweep(spec, **kw, confirm=1, confirm_seeds=2).studies[0]
    # Finalists: the best complete trial (1) and the starting trial (0), each on C0 and C1;
    # the trials themselves are not rerun.
    assert calls[3:] == [(1, C0), (1, C1), (0, C0), (0, C1)]
    assert (res.best_trial, res.best_value, res.best_seeds) == (0, 5.0, 3)
    assert res.finalists == [{"trial": 0, "values": [5.0, 5.0, 5.0], "mean": 5.0},
                             {"trial": 1, "values": [10.0, 1.0, 1.0], "mean": 4.0}]
    trials = _study(db, study_name("c", "CartPole-v1", "ppo")).trials
    assert load_hyperparams(out / "ppo.yml", "ppo")["CartPole-v1"].algo_kwargs \
        == registry.train_settings("ppo", "CartPole-v1", trials[0].user_attrs["kwargs"]
                                   ).algo_kwargs
    assert "(trial 0, mean of 3 seeds)" in (out / "ppo.yml").read_text()
    doc = json.loads((out / "tuning.json").read_text())
    assert (doc["confirm"], doc["confirm_seeds"], doc["studies"][0]["best_seeds"]) == (1, 2, 3)
    assert describe_settings("ppo", "CartPole-v1", out).endswith(
        "x 256 steps, best of 2 finalists on 3 seeds")

    # Resuming reuses every rerun made; a wider confirmation adds only the new finalist's.
    tune_sweep(spec, **kw, confirm=1, confirm_seeds=2)
    assert len(calls) == 7
    wider = tune_sweep(spec, **kw, confirm=3, confirm_seeds=2).studies[0]
    assert calls[7:] == [(2, C0), (2, C1)] and wider.best_trial == 0


def test_a_finalist_with_a_failed_rerun_is_dropped(tmp_path: Path, monkeypatch) -> None:
    C0 = tune.confirm_seed(0, 0)
    score = {0: lambda s: 5.0, 1: lambda s: 4.0}
    _fake_by_settings(monkeypatch, score, fail=frozenset({(0, C0)}))
    res = tune_sweep(parse_sweep(_sweep("d", "  - ppo")), trials=2,
                     storage=f"sqlite:///{tmp_path / 'd.db'}", out_dir=tmp_path / "out",
                     progress=False, confirm=2, confirm_seeds=1).studies[0]
    assert res.finalists == [{"trial": 1, "values": [4.0, 4.0], "mean": 4.0},
                             {"trial": 0, "values": [5.0], "mean": None,
                              "failed": "failed on purpose"}]
    assert (res.status, res.best_trial, res.best_value) == ("tuned", 1, 4.0)
    stored = _study(tmp_path / "d.db", study_name("d", "CartPole-v1", "ppo")).user_attrs
    assert stored[f"confirm/0/{C0}"] == {"failed": "failed on purpose"}

    # A rerun under files that changed since the trial would test other settings: refused.
    kw = dict(trials=2, storage=f"sqlite:///{tmp_path / 'e.db'}", out_dir=tmp_path / "out",
              progress=False)
    tune_sweep(parse_sweep(_sweep("e", "  - ppo")), **kw)
    monkeypatch.setattr(tune, "_file_entry", lambda *a: {"n_envs": 99})
    res = tune_sweep(parse_sweep(_sweep("e", "  - ppo")), **kw, confirm=2,
                     confirm_seeds=1).studies[0]
    assert len(res.finalists) == 2
    assert all("files changed since the trial" in f["failed"] for f in res.finalists)
    assert res.best_trial == 0 and "single-seed best" in res.reason

    with pytest.raises(ValueError, match="confirm_seeds must be an integer >= 1"):
        tune_sweep(parse_sweep(_sweep("d", "  - ppo")), trials=2, storage="x.db",
                   out_dir=tmp_path / "out", confirm=1, confirm_seeds=0)
