"""Registration of the qdrl ids: idempotent, complete, free of side effects.

That each id makes its single and vector env with the registered figures is checked in
test_envs.py (``test_registered_figures``).
"""

from __future__ import annotations

import importlib
import subprocess
import sys

from gymnasium.envs.registration import registry

import qdrl_envs


def _module_of(entry_point: str) -> str:
    return entry_point.split(":")[0]


def test_every_id_is_registered_with_time_limit_and_vector_entry_point():
    assert len(qdrl_envs.ENV_IDS) == len(set(qdrl_envs.ENV_IDS)) >= 5
    for env_id in qdrl_envs.ENV_IDS:
        assert env_id.startswith("qdrl/") and env_id[-3:] in ("-v0", "-v1")
        spec = registry[env_id]
        assert isinstance(spec.max_episode_steps, int) and spec.max_episode_steps > 0
        assert isinstance(spec.entry_point, str) and spec.entry_point.startswith("qdrl_envs.")
        assert spec.entry_point.endswith("Env")
        assert spec.vector_entry_point == spec.entry_point[:-len("Env")] + "VectorEnv"


def test_registration_is_idempotent():
    before = {k: (v.entry_point, v.vector_entry_point, v.max_episode_steps)
              for k, v in registry.items() if k.startswith("qdrl/")}
    qdrl_envs.register_envs()
    qdrl_envs.register_envs()
    importlib.reload(qdrl_envs)  # importing the package again re-runs registration
    after = {k: (v.entry_point, v.vector_entry_point, v.max_episode_steps)
             for k, v in registry.items() if k.startswith("qdrl/")}
    assert after == before


def test_importing_twice_in_a_fresh_interpreter_is_silent_and_light():
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "import sys, importlib, qdrl_envs\n"
        "importlib.reload(qdrl_envs); qdrl_envs.register_envs()\n"
        "import gymnasium as gym\n"
        "assert all(i in gym.registry for i in qdrl_envs.ENV_IDS)\n"
        "heavy = [m for m in ('stable_baselines3', 'qdrl_agents', 'torch', 'qiskit')\n"
        "         if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == ""  # importing prints nothing


def test_env_modules_import_neither_agents_nor_sb3():
    modules = sorted({_module_of(registry[i].entry_point) for i in qdrl_envs.ENV_IDS})
    code = (f"import importlib, sys\n"
            f"for name in {modules!r} + ['qdrl_envs.baselines', 'qdrl_envs.wrappers']:\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except ImportError:\n"
            "        continue  # not written yet: test_envs.py fails on it\n"
            "bad = [m for m in ('stable_baselines3', 'qdrl_agents') if m in sys.modules]\n"
            "assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
