"""Robustness conditions, attacks, poisoned and adversarial training, saved agents, the report."""

from __future__ import annotations

import contextlib
import io
import shutil
import sqlite3
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from qdrl_bench import registry
from qdrl_bench.cli import main
from qdrl_bench.report import build_reports, write_report
from qdrl_bench.robustness import (
    attack_observations,
    device_circuit,
    eval_env_factory,
    evaluate_conditions,
    make_device_executor,
)
from qdrl_bench.runner import run_sweep
from qdrl_bench.sharing import ObsNormalizer, import_agent
from qdrl_bench.spec import SpecError, expand_runs, load_sweep, parse_sweep
from qdrl_bench.store import (
    SCHEMA_VERSION,
    ConditionResult,
    EvalPoint,
    InMemoryStore,
    RunKey,
    RunResult,
    SQLiteStore,
)

SECRECY = "qdrl/SecrecyPowerControl-v1"

SWEEP = """\
name: rob
store: sqlite:///{db}
seeds: 1
timesteps: 64
eval:
  every: 64
  episodes: 3
  conditions:
{conditions}
envs:
  - {{id: qdrl/SecrecyPowerControl-v1, kwargs: {{n_aps: 2}}, max_episode_steps: 5}}
agents:
  - {{name: q-ppo, kwargs: {{n_steps: 4, policy_kwargs: {{n_layers: 1}}}}}}
  - {{name: ppo, kwargs: {{n_steps: 4, policy_kwargs: {{net_arch: [16]}}}}}}
  - name: ppo
    label: ppo-flip30
    kwargs: {{n_steps: 4, policy_kwargs: {{net_arch: [16]}}}}
    train_wrappers: [{{kind: reward, fraction: 0.3, mode: flip}}]
  - name: ppo
    label: ppo-adv
    kwargs: {{n_steps: 4, policy_kwargs: {{net_arch: [16]}}}}
    adversarial_training: {{attack: fgsm, epsilon: 0.05, rate: 0.5}}
  - random
"""
CONDITIONS = """\
    - {name: exact, kind: executor}
    - {name: fgsm, kind: adversarial, attack: fgsm, epsilon: [0, 0.1]}
    - {name: noise, kind: obs_noise, scale: 0.05}
"""


def _conditions(store, run_id: str) -> dict[str, ConditionResult]:
    return {c.name: c for c in store.get_conditions(run_id)}


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, str]:
    """One small sweep (quantum, classical, poisoned, adversarially trained, a baseline)."""
    base = tmp_path_factory.mktemp("rob")
    db = base / "rob.db"
    text = SWEEP.format(db=db, conditions=CONDITIONS)
    summary = run_sweep(parse_sweep(text), progress=False)
    assert summary.statuses == {"finished": 5}, summary.failures
    assert not summary.condition_failures, summary.condition_failures
    return db, text


def _runs(db: Path) -> dict[str, object]:
    with SQLiteStore(db, read_only=True) as s:
        return {r.key.agent: r for r in s.list_runs()}


def test_the_executor_condition_without_noise_or_shots_reproduces_the_clean_score(swept):
    db, _ = swept
    runs = _runs(db)
    with SQLiteStore(db, read_only=True) as s:
        q = _conditions(s, runs["q-ppo"].run_id)
        clean = runs["q-ppo"].result.final_score
        # Aer's double-precision statevector against the policy's float32 torch statevector:
        # the same episodes to a relative 1e-5 (measured: ~1e-9), not bit for bit.
        assert q["exact"].status == "finished"
        assert q["exact"].mean == pytest.approx(clean, rel=1e-5)
        c = _conditions(s, runs["ppo"].run_id)
        assert c["exact"].status == "not_applicable" and "classical" in c["exact"].reason
        base = _conditions(s, runs["random"].run_id)
        assert {r.status for r in base.values()} == {"not_applicable"}


def test_fgsm_at_epsilon_zero_is_the_clean_evaluation(swept):
    db, _ = swept
    runs = _runs(db)
    with SQLiteStore(db, read_only=True) as s:
        for agent in ("q-ppo", "ppo"):
            conds = _conditions(s, runs[agent].run_id)
            clean = runs[agent].result.final_score
            # lockstep episodes: the same observations, a batch instead of single rows
            assert conds["fgsm=0"].mean == pytest.approx(clean, rel=1e-6)
            assert conds["fgsm=0"].metrics["attack/kl"] == 0.0
            assert conds["fgsm=0.1"].metrics["attack/kl"] > 0.0
            assert conds["noise"].status == "finished"


def test_poisoned_and_adversarial_training_record_their_fractions(swept):
    db, _ = swept
    runs = _runs(db)
    flip = runs["ppo-flip30"].result.metrics["train/poisoned_reward_fraction"]
    assert 0.15 < flip < 0.45  # 64 row-steps at 0.3
    adv = runs["ppo-adv"].result.metrics["train/attacked_fraction"]
    assert 0.3 < adv < 0.7
    assert runs["ppo-flip30"].key.config["agent"]["train_wrappers"][0]["fraction"] == 0.3
    assert "train_wrappers" not in runs["ppo"].key.config["agent"]  # old hashes unchanged


def test_a_rerun_skips_evaluated_conditions_and_evaluates_a_new_one_from_the_saved_agent(
        swept, tmp_path):
    db, text = swept
    copy = tmp_path / "rob.db"
    shutil.copy(db, copy)
    shutil.copytree(db.with_name("rob-agents"), tmp_path / "rob-agents")
    before = {a: (r.attempts, r.result.final_score) for a, r in _runs(copy).items()}
    again = run_sweep(parse_sweep(text.replace(str(db), str(copy))), progress=False)
    assert again.statuses == {} and again.conditions == {} and again.from_saved == 0
    added = CONDITIONS + "    - {name: shots, kind: executor, shots: 256}\n"
    more = run_sweep(parse_sweep(SWEEP.format(db=copy, conditions=added)), progress=False)
    assert more.statuses == {}  # nothing trained
    assert more.from_saved == 1  # q-ppo: the classical agents' executor result needs no agent
    assert more.conditions == {"finished": 1, "not_applicable": 4}
    after = _runs(copy)
    assert {a: (r.attempts, r.result.final_score) for a, r in after.items()} == before
    with SQLiteStore(copy, read_only=True) as s:
        shots = _conditions(s, after["q-ppo"].run_id)["shots"]
        assert shots.status == "finished" and shots.config["shots"] == 256
        assert _conditions(s, after["ppo"].run_id)["shots"].status == "not_applicable"
    # changed knobs under the same name: evaluated again; a lost agent: trained again
    shutil.rmtree(tmp_path / "rob-agents")
    changed = CONDITIONS + "    - {name: shots, kind: executor, shots: 512}\n"
    redo = run_sweep(parse_sweep(SWEEP.format(db=copy, conditions=changed)), progress=False)
    assert redo.retrained == 1 and redo.statuses == {"finished": 1}
    with SQLiteStore(copy, read_only=True) as s:
        rec = _runs(copy)["q-ppo"]
        assert rec.attempts == 2
        assert rec.result.final_score == pytest.approx(before["q-ppo"][1])  # same seeds
        assert _conditions(s, rec.run_id)["shots"].config["shots"] == 512
    assert (tmp_path / "rob-agents").is_dir()


def test_the_score_spread_shrinks_as_shots_grow(swept):
    db, _ = swept
    agent_dir = next(p.parent for p in db.with_name("rob-agents").rglob("agent.json")
                     if "q-ppo" in str(p))
    model, normalizer = import_agent(agent_dir)
    spec = parse_sweep(SWEEP.format(db=db, conditions=CONDITIONS))
    run = next(r for r in expand_runs(spec, baselines_of=registry.baselines_for)
               if r.agent.label == "q-ppo")
    spreads = {}
    for shots in (16, 4096):  # the score over 8 shot-noise seeds, same episodes
        conds = parse_sweep(SWEEP.format(db=db, conditions="".join(
            f"    - {{name: s{seed}, kind: executor, shots: {shots}, seed: {seed}}}\n"
            for seed in range(8)))).eval.conditions
        results = evaluate_conditions(model, normalizer, run, conds, eval_env_factory(run))
        assert {r.status for r in results} == {"finished"}
        spreads[shots] = float(np.std([r.mean for r in results]))
    assert spreads[4096] < spreads[16] / 4  # ~1/sqrt(shots): 256x the shots, ~1/16 the spread
    assert spreads[16] > 0


def _policies():
    env = gym.make(SECRECY, n_aps=2)
    from stable_baselines3 import PPO

    from qdrl_agents import QuantumActorCriticPolicy

    mlp = PPO("MlpPolicy", env, seed=0, n_steps=8, device="cpu").policy
    quantum = PPO(QuantumActorCriticPolicy, env, seed=0, n_steps=8, device="cpu",
                  policy_kwargs={"n_layers": 1}).policy
    obs = np.stack([env.reset(seed=s)[0] for s in range(12)])
    return env.observation_space, obs, {"mlp": mlp, "quantum": quantum}


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
@pytest.mark.parametrize("objective", ["kl", "value"])
def test_attacks_stay_in_the_space_and_lower_the_objective(attack, objective):
    space, obs, policies = _policies()
    normalizer = ObsNormalizer(obs.mean(0), obs.var(0) + 0.01, 1e-8, 10.0)
    for name, policy in policies.items():
        for norm in (None, normalizer):
            knobs = {"attack": attack, "epsilon": 0.0, "objective": objective, "steps": 5,
                     "step_size": None, "random_start": objective == "kl"}
            same, info = attack_observations(policy, obs, low=space.low, high=space.high,
                                             knobs=knobs, normalizer=norm)
            np.testing.assert_array_equal(same, obs)
            assert np.all(info["kl"] == 0.0)
            knobs["epsilon"] = 0.1
            adv, info = attack_observations(policy, obs, low=space.low, high=space.high,
                                            knobs=knobs, normalizer=norm,
                                            rngs=[np.random.default_rng(i) for i in range(12)])
            assert adv.dtype == obs.dtype and adv.shape == obs.shape
            assert np.all(adv >= space.low) and np.all(adv <= space.high), name
            budget = 0.1 * (space.high - space.low)
            assert np.all(np.abs(adv.astype(np.float64) - obs) <= budget + 1e-6), name
            if objective == "value":  # the critic's value of what the policy sees falls
                assert info["value_drop"].mean() > 0, (name, attack)
                if attack == "pgd":  # best iterate, the clean start included
                    assert np.all(info["value_drop"] >= -1e-6), name
            else:  # the action distribution moves, further than the random start alone
                start = dict(knobs, attack="pgd", steps=1, step_size=1e-9)
                _, rand = attack_observations(policy, obs, low=space.low, high=space.high,
                                              knobs=start, normalizer=norm,
                                              rngs=[np.random.default_rng(i)
                                                    for i in range(12)])
                assert info["kl"].mean() > rand["kl"].mean() > 0, (name, attack)


def test_device_executor_shots_readout_and_a_fake_backend_match_their_models():
    from qiskit import transpile
    from qiskit_aer.noise import NoiseModel
    from qiskit_aer.primitives import EstimatorV2

    from qdrl_agents import CircuitSpec, build_circuit, make_executor

    built = build_circuit(CircuitSpec(n_qubits=3, n_layers=2))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, built.n_input_params, generator=g, dtype=torch.float64)
    w = 6 * torch.rand(built.n_weights, generator=g, dtype=torch.float64)
    exact = make_executor("statevector", built, dtype=torch.float64)(x, w)
    np.testing.assert_allclose(make_device_executor(built)(x, w), exact, atol=1e-10)
    qiskit = make_executor("qiskit", built, estimator="aer")(x, w)
    np.testing.assert_allclose(make_device_executor(built)(x, w), qiskit, atol=1e-10)
    read = make_device_executor(built, noise=({"kind": "readout", "p": 0.1},))(x, w)
    np.testing.assert_allclose(read, 0.8 * exact, atol=1e-10)  # one Z per output: 1 - 2p
    spreads = []
    for shots in (64, 4096):
        ex = make_device_executor(built, shots=shots, seed=(3,))
        draws = torch.stack([ex(x, w) for _ in range(200)]).numpy()
        want = np.sqrt((1 - exact.numpy() ** 2) / shots)  # binomial: exact, not 1/sqrt(N)
        np.testing.assert_allclose(draws.std(axis=0), want, rtol=0.25)
        np.testing.assert_allclose(draws.mean(axis=0), exact, atol=4 * want.max() / 10)
        spreads.append(draws.std(axis=0).mean())
    assert spreads[1] < spreads[0] / 5  # 64x the shots, 1/8 the spread
    # The fake backend: the circuit on 3 of FakeManilaV2's 5 qubits, renumbered, equals the
    # full device's circuit under NoiseModel.from_backend (readout off) on the same qubits.
    params = {"backend": "FakeManilaV2", "qubits": None, "optimization_level": 1,
              "seed_transpiler": 0}
    device, _, readout, phys = device_circuit(built, params)
    assert device.n_qubits == 3 and len(phys) == 3 and all(0 < p < 0.5 for p in readout)
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    backend = FakeManilaV2()
    isa = transpile(built.circuit, backend=backend, initial_layout=phys, optimization_level=1,
                    seed_transpiler=0)
    est = EstimatorV2(options={"default_precision": 0.0, "backend_options": {
        "method": "density_matrix",
        "noise_model": NoiseModel.from_backend(backend, readout_error=False)}})
    binds = {tuple([*built.inputs, *built.weights]):
             np.concatenate([x.numpy(), np.tile(w.numpy(), (4, 1))], axis=1)}
    full = np.stack([est.run([(isa, o.apply_layout(isa.layout), binds)]).result()[0].data.evs
                     for o in built.observables], axis=1)
    mine = make_device_executor(built, noise=({"kind": "fake_backend", **params},))(x, w)
    factors = []
    for o in device.observables:  # each output's readout factor, on its final qubit
        (label, _), = o.to_list()
        q = label[::-1].index("Z")
        factors.append(1 - 2 * readout[q])
    np.testing.assert_allclose(mine.numpy(), full * np.array(factors), atol=1e-9)
    assert np.abs(full - exact.numpy()).max() > 1e-3  # the noise is there


def test_reward_poisoning_through_train_wrappers_flips_the_requested_fraction():
    kw = {"n_aps": 2}
    clean, _ = registry.make_train_env(SECRECY, kw, n_envs=8)
    wrapped, _ = registry.make_train_env(
        SECRECY, kw, n_envs=8, train_wrappers=[{"kind": "reward", "fraction": 0.3,
                                                "mode": "flip"}], wrapper_seed=5)
    rng = np.random.default_rng(0)
    for env in (clean, wrapped):
        env.seed(3)
        env.reset()
    rewards = []
    for _ in range(150):
        actions = rng.uniform(-1, 1, (8, 2)).astype(np.float32)
        rewards.append((clean.step(actions)[1], wrapped.step(actions)[1]))
    a = np.concatenate([r[0] for r in rewards])
    b = np.concatenate([r[1] for r in rewards])
    hit = ~np.isclose(a, b)
    np.testing.assert_allclose(b[hit], -a[hit], rtol=1e-6)  # flipped exactly where poisoned
    assert abs(hit.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / hit.size)


@pytest.mark.parametrize(("conditions", "match"), [
    ("    - {name: a, kind: nope}\n", r"rob.yaml:\d+: eval.conditions\[0\].kind: must be one"),
    ("    - {name: a, kind: executor, shots: -5}\n", r"conditions\[0\].shots: must be >= 1"),
    ("    - {name: a, kind: executor, shots: [64, 0]}\n", r"conditions\[0\].shots\[1\]"),
    ("    - {name: a, kind: executor, noise: {kind: depolarizing, p2: -0.1}}\n",
     r"conditions\[0\].noise.p2: must be >= 0"),
    ("    - {name: a, kind: executor, noise: {kind: readout, p: 0.7}}\n",
     r"noise.p: must be <= 0.5"),
    ("    - {name: a, kind: adversarial, attack: fgsm, epsilon: 1.5}\n",
     r"conditions\[0\].epsilon: must be <= 1"),
    ("    - {name: a, kind: adversarial, attack: pgd, epsilon: -0.1}\n",
     r"conditions\[0\].epsilon: must be >= 0"),
    ("    - {name: a, kind: obs_noise, scale: 0.1}\n    - {name: a, kind: obs_noise, "
     "scale: 0.2}\n", r"duplicate condition name 'a'"),
    ("    - {name: a, kind: obs_noise, scale: 0.1, agents: [nobody]}\n",
     r"unknown agent label\(s\) \['nobody'\]"),
])
def test_bad_conditions_are_refused_naming_the_key_and_line(conditions, match, tmp_path):
    text = SWEEP.format(db=tmp_path / "x.db", conditions=conditions)
    with pytest.raises(SpecError, match=match):
        parse_sweep(text, source="rob.yaml")


def test_noise_conditions_for_a_classical_only_sweep_fail_before_any_run(tmp_path):
    text = (f"name: c\nstore: sqlite:///{tmp_path / 'c.db'}\ntimesteps: 8\n"
            "eval:\n  conditions:\n    - {name: dep, kind: executor, shots: 64, "
            "noise: {kind: depolarizing, p2: 0.01}}\n"
            "envs: [CartPole-v1]\nagents: [ppo, random]\n")
    with pytest.raises(SpecError, match=r"c.yaml:6: eval.conditions\[0\]: .* are all classical"):
        run_sweep(parse_sweep(text, source="c.yaml"), progress=False)
    assert not (tmp_path / "c.db").exists()  # refused before the store was opened
    path = tmp_path / "c.yaml"
    path.write_text(text)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["run", str(path), "--quiet"]) == 2
    assert "are all classical" in err.getvalue()
    bad = text.replace("depolarizing, p2: 0.01", "fake_backend, backend: FakeNowhere").replace(
        "agents: [ppo, random]", "agents: [q-ppo]")
    with pytest.raises(SpecError, match="no fake backend 'FakeNowhere'"):
        run_sweep(parse_sweep(bad), progress=False)
    poisoned = text.replace("eval:\n  conditions:\n    - {name: dep, kind: executor, shots: 64, "
                            "noise: {kind: depolarizing, p2: 0.01}}\n", "").replace(
        "agents: [ppo, random]",
        "agents: [{name: ppo, train_wrappers: [{kind: reward, fraction: 1.0, mode: targeted, "
        "target_action: 7}]}]")
    with pytest.raises(SpecError, match=r"agents\[0\].train_wrappers: on CartPole-v1: "
                                        r"target_action=7 is not in the action space"):
        run_sweep(parse_sweep(poisoned), progress=False)


def test_the_report_has_a_robustness_table_figure_and_the_poisoned_comparison(swept, tmp_path):
    db, _ = swept
    (rep,) = build_reports(SQLiteStore(db, read_only=True))
    names = [c[0] for c in rep.conditions]
    assert names == ["exact", "fgsm=0", "fgsm=0.1", "noise"]
    rows = {r.agent: r for r in rep.robustness}
    assert set(rows) == {"q-ppo", "ppo", "ppo-flip30", "ppo-adv"} and rows["q-ppo"].quantum
    assert rows["q-ppo"].cells["exact"].iqm == pytest.approx(1.0, abs=1e-5)
    assert rows["ppo"].cells["exact"].status == "n/a"
    assert rows["ppo"].cells["fgsm=0"].iqm == pytest.approx(1.0, abs=1e-6)
    training = {t.agent: t for t in rep.training}
    assert set(training) == {"ppo-flip30", "ppo-adv"}
    assert training["ppo-flip30"].clean_agent == "ppo" and "reward poisoning 0.3" in \
        training["ppo-flip30"].training
    paths = write_report(db, tmp_path / "report")
    assert any(p.endswith("_robustness.png") for p in paths["png"])
    md = Path(paths["markdown"]).read_text()
    assert "#### Robustness" in md and "#### Poisoned and adversarial training" in md
    assert "Robustness" in Path(paths["html"]).read_text()


def _finished(score: float, conditions=()) -> RunResult:
    return RunResult(status="finished", final_score=score, final_std=0.0,
                     curve=(EvalPoint(step=1, mean=score, std=0.0, returns=(score,)),),
                     conditions=tuple(conditions))


def _cond(name: str, status: str = "finished", chash: str = "h", mean: float = 1.0):
    return ConditionResult(name=name, config_hash=chash, kind="obs_noise", status=status,
                           mean=mean if status == "finished" else None, reason=None)


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_store_keeps_conditions_with_their_run(backend, tmp_path):
    store = InMemoryStore() if backend == "memory" else SQLiteStore(tmp_path / "s.db")
    key = RunKey(sweep="s", env="E", agent="a", seed=0, config_hash="c")
    rid = store.ensure_run(key).run_id
    with pytest.raises(ValueError, match="finished runs only"):
        store.record_conditions(rid, [_cond("x")])
    store.record_result(rid, _finished(2.0, [_cond("a"), _cond("b", "failed")]))
    assert [c.name for c in store.get_conditions(rid)] == ["a", "b"]
    # a done one of the same knobs is kept; a failed one or other knobs are replaced
    n = store.record_conditions(rid, [_cond("a", mean=9.0), _cond("b", mean=3.0),
                                      _cond("c", chash="h2")])
    assert n == 2
    got = {c.name: c for c in store.get_conditions(rid)}
    assert got["a"].mean == 1.0 and got["b"].mean == 3.0 and got["c"].config_hash == "h2"
    assert store.record_conditions(rid, [_cond("a", chash="h9", mean=5.0)]) == 1
    assert {c.name: c.mean for c in store.get_conditions(rid)}["a"] == 5.0
    store.replace_result(rid, _finished(4.0, [_cond("z")]))  # a redo's result: its own
    assert [c.name for c in store.get_conditions(rid)] == ["z"]
    store.close()


def test_a_schema_3_store_is_upgraded_and_reads_read_only_without_conditions(tmp_path):
    path = tmp_path / "v3.db"
    with SQLiteStore(path) as s:
        rid = s.ensure_run(RunKey(sweep="s", env="E", agent="a", seed=0,
                                  config_hash="c")).run_id
        s.record_result(rid, _finished(3.0))
    conn = sqlite3.connect(path)  # what schema 3 wrote: no conditions table
    conn.execute("DROP TABLE conditions")
    conn.execute("UPDATE qdrl_meta SET value='3' WHERE key='schema'")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with SQLiteStore(path, read_only=True) as ro:
        assert ro.get_run(rid).result.final_score == 3.0 and ro.get_conditions(rid) == []
    assert path.read_bytes() == before
    with SQLiteStore(path) as s:  # upgraded in place
        assert s.get_conditions(rid) == []
        s.record_conditions(rid, [_cond("a")])
        assert [c.name for c in s.get_conditions(rid)] == ["a"]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM qdrl_meta").fetchone()[0] == SCHEMA_VERSION == "4"
    conn.close()


def test_the_shipped_robustness_sweep_passes_every_check():
    from qdrl_bench.runner import check_conditions, check_train_wrappers

    spec = load_sweep(Path(registry.__file__).parent / "configs" / "robustness.yaml")
    check_conditions(spec)
    check_train_wrappers(spec)
    assert {e.id for e in spec.envs} == {SECRECY, "qdrl/SemanticSlicing-v1"}
    assert [c.name for c in spec.eval.conditions] == [
        "shots=128", "shots=1024", "shots=8192", "depolarizing=0.001", "depolarizing=0.01",
        "depolarizing=0.05", "torino", "fgsm=0.01", "fgsm=0.05", "fgsm=0.1",
        "pgd=0.01", "pgd=0.05", "pgd=0.1"]
    flips = sorted({w["fraction"] for a in spec.agents for w in a.train_wrappers})
    assert flips == [0.1, 0.3]
    assert {a.name for a in spec.agents} == {"q-ppo", "ppo-small", "baselines"}
    defended = {a.label for a in spec.agents if a.adversarial_training}
    assert defended == {"q-ppo-adv", "ppo-small-adv"}
