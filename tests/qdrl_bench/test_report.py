from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from qdrl_bench.report import build_reports, iqm, stratified_bootstrap_ci, write_report
from qdrl_bench.runner import run_sweep
from qdrl_bench.spec import parse_sweep
from qdrl_bench.store import EvalPoint, InMemoryStore, RunKey, RunResult, StoreError

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def test_iqm() -> None:
    assert iqm([1, 2, 3, 4]) == pytest.approx(2.5)
    assert iqm([0, 1, 2, 3, 4, 5, 6, 100]) == pytest.approx(3.5)  # the outliers are trimmed
    assert np.isnan(iqm([]))


def test_stratified_bootstrap() -> None:
    est, lo, hi = stratified_bootstrap_ci([[1.0, 1.0], [3.0, 3.0]])
    assert (est, lo, hi) == (2.0, 2.0, 2.0)  # no spread within strata -> no interval
    rng = np.random.default_rng(0)
    groups = [rng.normal(0, 1, 10), rng.normal(5, 1, 10)]
    est, lo, hi = stratified_bootstrap_ci(groups, seed=3)
    assert lo < est < hi
    assert (est, lo, hi) == stratified_bootstrap_ci(groups, seed=3)  # reproducible
    with pytest.raises(ValueError, match="at least one score"):
        stratified_bootstrap_ci([[]])


def _put(store: InMemoryStore, agent: str, seed: int, score: float, name: str | None = None,
         metrics: dict | None = None) -> None:
    key = RunKey(sweep="syn", env="E", agent=agent, seed=seed, config_hash="h", env_id="qdrl/E",
                 agent_name=name or agent)
    rid = store.ensure_run(key).run_id
    store.mark_running(rid)
    store.record_result(rid, RunResult(
        status="finished", final_score=score, final_std=0.0, wall_s=1.0, params_quantum=3,
        params_classical=7, metrics=metrics or {},
        curve=(EvalPoint(0, 0.0, 0.0, (0.0,)), EvalPoint(10, score, 0.0, (score,)))))


def test_normalisation_and_oracle_fraction() -> None:
    store = InMemoryStore()
    for seed in range(3):
        _put(store, "random", seed, 0.0 + seed, metrics={"eval/secrecy_rate": 1.0})
        _put(store, "oracle", seed, 11.0 - seed)
        _put(store, "full-power", seed, 5.0)
        _put(store, "q-ppo", seed, 5.0 + seed, metrics={"eval/secrecy_rate": 2.0})
    na = store.ensure_run(RunKey(sweep="syn", env="E", agent="q-dqn", seed=0, config_hash="h",
                                 env_id="qdrl/E", agent_name="q-dqn")).run_id
    store.record_result(na, RunResult(status="not_applicable", reason="cap 4096 exceeded"))
    (rep,) = build_reports(store)
    rows = {r.agent: r for r in rep.rows}
    assert rep.random_score == pytest.approx(1.0) and rep.reference == ("oracle", 10.0)
    assert rows["q-ppo"].normalised == pytest.approx((6.0 - 1.0) / 9.0)
    assert rows["oracle"].normalised == pytest.approx(1.0)
    assert rows["q-ppo"].of_oracle == pytest.approx(0.6)
    assert rows["q-ppo"].metrics == {"eval/secrecy_rate": 2.0}
    assert not rows["q-ppo"].is_baseline and rows["full-power"].is_baseline
    assert rep.other == [("q-dqn/0", "not_applicable", "cap 4096 exceeded")]
    with pytest.raises(ValueError, match="sweep 'nope' is not in the store"):
        build_reports(store, "nope")


def test_report_of_missing_store_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store at"):
        write_report(tmp_path / "none.db", tmp_path / "out")
    assert not (tmp_path / "none.db").exists()


SWEEP = """\
name: rep
seeds: 2
timesteps: 64
eval: {every: 32, episodes: 2}
envs:
  - id: CartPole-v1
    max_episode_steps: 20
  - id: Pendulum-v1
    max_episode_steps: 20
agents:
  - name: ppo
    kwargs: {n_steps: 32, batch_size: 16}
  - name: dqn
  - baselines
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("report")
    db = out / "rep.db"
    run_sweep(parse_sweep(SWEEP), store=f"sqlite:///{db}", progress=False)
    return write_report(f"sqlite:///{db}", out / "html")


def test_report_files(report: dict) -> None:
    md = Path(report["markdown"]).read_text()
    assert "### CartPole-v1" in md and "### Pendulum-v1" in md
    assert "IQM [95% CI]" in md
    assert "BoxToDiscrete" in md  # dqn on Pendulum went through the adapter
    for png in report["png"]:
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({Path(png).name})" in md
    page = Path(report["html"]).read_text()
    assert "src='http" not in page and 'src="http' not in page  # self-contained
    assert page.count("data:image/png;base64,") == 2


def test_html_renders_in_headless_chromium(report: dict, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium is not on PATH (Debian: apt-get install -y chromium)")
    # A copy of the page with a probe that records, after load, what Chromium rendered.
    probe = ("<script>window.addEventListener('load',()=>{const r=document.createElement('pre');"
             "r.id='probe';r.textContent=JSON.stringify({tables:document.querySelectorAll("
             "'table').length,rows:document.querySelectorAll('tbody tr').length,images:[...document"
             ".images].map(i=>[i.complete,i.naturalWidth,i.naturalHeight])});"
             "document.body.appendChild(r);});</script>")
    page = Path(report["html"]).read_text().replace("</body>", probe + "</body>")
    probed = tmp_path / "probed.html"
    probed.write_text(page)
    profile = tmp_path / "profile"
    result = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
         "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert match, result.stdout[-2000:]
    import json

    seen = json.loads(match.group(1).replace("&quot;", '"'))
    assert seen["tables"] >= 2 and seen["rows"] >= 6
    assert len(seen["images"]) == 2
    for complete, width, height in seen["images"]:
        assert complete and width > 100 and height > 100  # decoded, not broken-image icons
    # and the inlined images are the PNGs written next to the Markdown
    inlined = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert {base64.b64decode(b) for b in inlined} == {Path(p).read_bytes()
                                                      for p in report["png"]}
    import matplotlib.image as mpimg

    assert mpimg.imread(io.BytesIO(base64.b64decode(inlined[0])), format="png").ndim == 3


def test_cli_report_refuses_corrupt_store(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from qdrl_bench.cli import main

    bad = tmp_path / "bad.db"
    bad.write_bytes(b"\x00garbage" * 64)
    assert main(["report", str(bad), "--out", str(tmp_path / "rep")]) == 2
    assert "not a SQLite database" in capsys.readouterr().err
    assert bad.read_bytes() == b"\x00garbage" * 64


def test_mixed_code_versions_are_flagged(tmp_path: Path) -> None:
    store = InMemoryStore()
    for seed, version in ((0, "aaa"), (1, "bbb")):
        rid = store.ensure_run(RunKey(sweep="v", env="E", agent="ppo", seed=seed,
                                      config_hash="h", env_id="E", agent_name="ppo")).run_id
        store.record_result(rid, RunResult(status="finished", final_score=1.0 + seed,
                                           code_version=version,
                                           curve=(EvalPoint(0, 1.0, 0.0, (1.0,)),)))
    (rep,) = build_reports(store)
    assert rep.code_versions == ("aaa", "bbb")
    md = Path(write_report(store, tmp_path)["markdown"]).read_text()
    assert "2 different versions of the code (aaa, bbb)" in md


def test_a_legacy_unavailable_run_is_reported_without_a_result(tmp_path: Path) -> None:
    import sqlite3

    from qdrl_bench.store import SQLiteStore

    db = tmp_path / "old.db"
    store = SQLiteStore(db)
    for seed in range(2):
        _put(store, "random", seed, float(seed))
    rid = store.ensure_run(RunKey(sweep="syn", env="E", agent="q-ppo", seed=0, config_hash="h",
                                  env_id="qdrl/E", agent_name="q-ppo")).run_id
    store.close()
    conn = sqlite3.connect(db)  # a row as an older version left it
    conn.execute("UPDATE runs SET status='unavailable', reason='qdrl_agents is not importable' "
                 "WHERE run_id=?", (rid,))
    conn.commit()
    conn.close()
    with SQLiteStore(db, read_only=True) as old:
        (rep,) = build_reports(old)
    assert rep.other == [("q-ppo/0", "unavailable", "qdrl_agents is not importable")]
    assert [r.agent for r in rep.rows] == ["random"]
    md = Path(write_report(str(db), tmp_path / "rep")["markdown"]).read_text()
    assert "| q-ppo/0 | unavailable | qdrl_agents is not importable |" in md


def test_results_carry_the_code_version(report: dict) -> None:
    from qdrl_bench.provenance import code_version

    versions = {v for rep in report["reports"] for v in rep.code_versions}
    assert versions == {code_version()}
    assert re.fullmatch(r"[0-9a-f]{12}", code_version())


def test_markdown_labels_are_inert_and_figures_never_collide(tmp_path: Path) -> None:
    store = InMemoryStore()
    hostile = "<script>alert(1)</script> [x](javascript:alert(1)) `c` a|b\nnew line"
    for env in ("a-b", "a_b"):  # the same slug
        for seed in range(2):
            for agent, score in (("random", 0.0), ("oracle", 2.0), (hostile, 1.0 + seed)):
                key = RunKey(sweep="syn", env=env, agent=agent, seed=seed, config_hash="h",
                             env_id="qdrl/E", agent_name="q-ppo" if agent == hostile else agent)
                rid = store.ensure_run(key).run_id
                store.mark_running(rid)
                store.record_result(rid, RunResult(
                    status="finished", final_score=score, final_std=0.0, wall_s=1.0,
                    curve=(EvalPoint(0, 0.0, 0.0, (0.0,)), EvalPoint(10, score, 0.0, (score,)))))
    paths = write_report(store, tmp_path / "rep")
    md = Path(paths["markdown"]).read_text()
    assert "<script>" not in md and "](javascript" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and "[x]\\(javascript:" in md
    row = next(line for line in md.splitlines() if "alert" in line)
    assert row.startswith("| ") and row.endswith(" |") and "new line" in row  # one table row
    assert "a\\|b" in row and "\\`c\\`" in row
    pngs = [Path(p).name for p in paths["png"]]
    assert len(pngs) == len(set(pngs)) == 3  # the aggregate and one per env, none overwritten
    assert {"syn_a_b_curves.png", "syn_a_b_curves_2.png"} <= set(pngs)
