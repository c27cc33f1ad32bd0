"""``qdrl/DTMigration-v0``: digital-twin placement and migration in multi-tier computing.

Paper Sec. V-F2 (i), Fig. 10. The physics is written once, as row functions that model one
instance and run inside compiled kernels looping over a batch (:mod:`qdrl_envs.jit`: a slot takes
dozens of tiny operations, which NumPy alone would spend on call overhead):

* :class:`DTMigrationCore` — mobility, uplink channels, task arrivals, migration admission and
  the task-latency model on ``N`` instances; its public :meth:`DTMigrationCore.evaluate` scores
  any candidate placement without changing state (the greedy baseline uses it);
* :class:`DTMigrationEnv` (the single Gymnasium env, whose docstring is the manual) and
  :class:`DTMigrationVectorEnv` (its NumPy-batched twin) both drive that core.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces
from numpy.typing import ArrayLike, NDArray

from qdrl_envs import radio
from qdrl_envs.config import EnvConfig, check_int, check_real
from qdrl_envs.core import (
    BatchedCore,
    CoreEnv,
    CoreVectorEnv,
    StepResult,
    Uniforms,
    agg_figure,
    figure_rgb,
)
from qdrl_envs.jit import jitable, kernel, plain, row_map
from qdrl_envs.traffic import InverseCdf, PoissonArrivals, inverse_cdf_draw, ring_mobility

__all__ = [
    "DTMigrationConfig",
    "DTMigrationCore",
    "DTMigrationEnv",
    "DTMigrationVectorEnv",
    "SlotEvaluation",
    "ring_hops",
]

SNR_OBS_LOW_DB = -10.0
"""Uplink SNR (dB) mapped to observation 0."""

SNR_OBS_HIGH_DB = 40.0
"""Uplink SNR (dB) mapped to observation 1."""

_MIN_RATE_BPS = 1e-3


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DTMigrationConfig(EnvConfig):
    """Configuration of ``qdrl/DTMigration-v0`` (see :class:`DTMigrationEnv` for the model).

    Attributes:
        n_edges: Edge servers ``N`` (one per area, on a ring backhaul), in [1, 16].
        n_users: Users ``U`` (one twin each), in [1, 32].
        edge_capacity_twins: Twins one edge server can host, in [1, 32].
        p_stay: Probability a user stays in its area for a slot (ring mobility), in [0, 1].
        task_rate: Mean twin-update tasks per user per slot (Poisson), in [0, 1000].
        task_bits: Data of one task ``D`` (bit).
        cycles_per_bit: CPU cycles per task bit ``c``.
        edge_cpu_hz: CPU frequency of one edge server (cycles/s).
        cloud_cpu_hz: CPU frequency of the cloud (cycles/s).
        bandwidth_hz: Uplink bandwidth of each user (Hz, orthogonal).
        tx_power_dbm: User transmit power (dBm).
        noise_figure_db: Edge receiver noise figure (dB).
        carrier_hz: Carrier frequency of the 1 m free-space reference (Hz).
        path_loss_exponent: Log-distance path-loss exponent.
        cell_radius_m: Users are uniform in a disc of this radius around their area's edge (m).
        hop_delay_s: Propagation and switching delay of one edge-edge backhaul hop (s).
        edge_link_bps: Rate of one edge-edge backhaul hop (bit/s).
        cloud_delay_s: Delay between any edge and the cloud (s).
        cloud_link_bps: Rate of an edge-cloud link (bit/s).
        twin_state_bits: Size of a twin's state, moved on migration (bit).
        edge_energy_j_per_cycle: Computing energy of an edge server (J/cycle).
        cloud_energy_j_per_cycle: Computing energy of the cloud (J/cycle).
        hop_energy_j_per_bit: Transport energy of one edge-edge hop (J/bit).
        cloud_energy_j_per_bit: Transport energy between an edge and the cloud (J/bit).
        max_latency_s: Cap on a task's latency (s); slower tasks count as failed at the cap.
        latency_scale_s: Latency (s) that costs one reward unit.
        energy_scale_j: Energy per user (J) that costs ``gamma_energy`` reward units.
        beta_migration: Weight of the migration downtime term.
        gamma_energy: Weight of the energy term.
        overload_penalty: Reward units lost per refused migration, per user.
    """

    n_edges: int = 4
    n_users: int = 6
    edge_capacity_twins: int = 2
    p_stay: float = 0.8
    task_rate: float = 1.0
    task_bits: float = 0.5e6
    cycles_per_bit: float = 200.0
    edge_cpu_hz: float = 10e9
    cloud_cpu_hz: float = 100e9
    bandwidth_hz: float = 20e6
    tx_power_dbm: float = 23.0
    noise_figure_db: float = 7.0
    carrier_hz: float = 3.5e9
    path_loss_exponent: float = 3.0
    cell_radius_m: float = 100.0
    hop_delay_s: float = 5e-3
    edge_link_bps: float = 100e6
    cloud_delay_s: float = 30e-3
    cloud_link_bps: float = 1e9
    twin_state_bits: float = 5e6
    edge_energy_j_per_cycle: float = 1e-9
    cloud_energy_j_per_cycle: float = 3e-10
    hop_energy_j_per_bit: float = 5e-8
    cloud_energy_j_per_bit: float = 5e-7
    max_latency_s: float = 1.0
    latency_scale_s: float = 0.1
    energy_scale_j: float = 1.0
    beta_migration: float = 0.5
    gamma_energy: float = 0.1
    overload_penalty: float = 0.5

    def validate(self) -> None:
        """Check every field.

        Raises:
            ValueError: Naming the field, its value and the allowed range.
        """
        check_int("n_edges", self.n_edges, low=1, high=16)
        check_int("n_users", self.n_users, low=1, high=32)
        check_int("edge_capacity_twins", self.edge_capacity_twins, low=1, high=32)
        check_real("p_stay", self.p_stay, 0.0, 1.0)
        check_real("task_rate", self.task_rate, 0.0, 1000.0)
        check_real("task_bits", self.task_bits, 1.0, 1e12)
        check_real("cycles_per_bit", self.cycles_per_bit, 0.0, 1e6, low_inclusive=False)
        check_real("edge_cpu_hz", self.edge_cpu_hz, 1e3, 1e15)
        check_real("cloud_cpu_hz", self.cloud_cpu_hz, 1e3, 1e15)
        check_real("bandwidth_hz", self.bandwidth_hz, 1.0, 1e11)
        check_real("tx_power_dbm", self.tx_power_dbm, -30.0, 60.0)
        check_real("noise_figure_db", self.noise_figure_db, 0.0, 30.0)
        check_real("carrier_hz", self.carrier_hz, 1e6, 1e12)
        check_real("path_loss_exponent", self.path_loss_exponent, 1.5, 6.0)
        check_real("cell_radius_m", self.cell_radius_m, 1.0, 1e5)
        check_real("hop_delay_s", self.hop_delay_s, 0.0, 10.0)
        check_real("edge_link_bps", self.edge_link_bps, 1.0, 1e15)
        check_real("cloud_delay_s", self.cloud_delay_s, 0.0, 10.0)
        check_real("cloud_link_bps", self.cloud_link_bps, 1.0, 1e15)
        check_real("twin_state_bits", self.twin_state_bits, 0.0, 1e15)
        check_real("edge_energy_j_per_cycle", self.edge_energy_j_per_cycle, 0.0, 1.0)
        check_real("cloud_energy_j_per_cycle", self.cloud_energy_j_per_cycle, 0.0, 1.0)
        check_real("hop_energy_j_per_bit", self.hop_energy_j_per_bit, 0.0, 1.0)
        check_real("cloud_energy_j_per_bit", self.cloud_energy_j_per_bit, 0.0, 1.0)
        check_real("max_latency_s", self.max_latency_s, 0.0, 3600.0, low_inclusive=False)
        # Lower bounds keep every reward finite (5e-324 s turned a latency into -inf).
        check_real("latency_scale_s", self.latency_scale_s, 1e-6, 3600.0)
        check_real("energy_scale_j", self.energy_scale_j, 1e-9, 1e9)
        check_real("beta_migration", self.beta_migration, 0.0, 1e6)
        check_real("gamma_energy", self.gamma_energy, 0.0, 1e6)
        check_real("overload_penalty", self.overload_penalty, 0.0, 1e6)


# --------------------------------------------------------------------------------------------
# Topology and the slot model
# --------------------------------------------------------------------------------------------


def ring_hops(n_edges: int) -> NDArray[np.int64]:
    """Backhaul hop counts between edges on a ring: ``min(|a - b|, N - |a - b|)``, ``(N, N)``."""
    idx = np.arange(n_edges)
    d = np.abs(idx[:, None] - idx[None, :])
    return np.minimum(d, n_edges - d)


@dataclass
class SlotEvaluation:
    """The outcome of one slot for a batch of placements (leading axis ``M``).

    Attributes:
        host: Hosts after admission ``(M, U)`` (index ``N`` = cloud).
        migrated: Twins that moved ``(M, U)`` (bool).
        refused: Requested migrations refused for lack of capacity ``(M, U)`` (bool).
        user_latency_s: Latency of each of a user's tasks ``(M, U)`` (0 for users without tasks).
        latency_s: Mean task latency over all tasks of the slot ``(M,)`` (0 without tasks).
        downtime_s: Summed migration downtime ``(M,)``.
        energy_j: Computing, task-transport and migration energy ``(M,)``.
        host_tasks: Tasks each host computes ``(M, N + 1)``.
        reward_terms: Signed, weighted reward contributions ``(M,)`` each; they sum to the reward.
        reward: ``(M,)``.
    """

    host: NDArray[np.int64]
    migrated: NDArray[np.bool_]
    refused: NDArray[np.bool_]
    user_latency_s: NDArray[np.float64]
    latency_s: NDArray[np.float64]
    downtime_s: NDArray[np.float64]
    energy_j: NDArray[np.float64]
    host_tasks: NDArray[np.float64]
    reward_terms: dict[str, NDArray[np.float64]]
    reward: NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# One instance at a time: row functions compiled into the core's kernels (see qdrl_envs.jit)
# --------------------------------------------------------------------------------------------

# The constants the kernels take (the template in qdrl_envs.core), built by DTMigrationCore.


class _Model(NamedTuple):
    """The slot model: admission, latency, energy and reward (``E`` edges, host ``E`` = cloud)."""

    access_delay_s: NDArray[np.float64]
    """``(E, E + 1)`` fixed delay from access edge ``a`` to host ``h``."""
    access_s_per_bit: NDArray[np.float64]
    """``(E, E + 1)`` seconds per task bit from ``a`` to ``h``."""
    access_j_per_bit: NDArray[np.float64]
    """``(E, E + 1)`` transport energy per task bit from ``a`` to ``h``."""
    migration_downtime_s: NDArray[np.float64]
    """``(E + 1, E + 1)`` downtime of a twin moving from ``g`` to ``h``."""
    migration_energy_j: NDArray[np.float64]
    """``(E + 1, E + 1)`` energy of that move."""
    task_compute_s: NDArray[np.float64]
    """``(E + 1,)`` solo compute time of one task on each host."""
    task_compute_j: NDArray[np.float64]
    """``(E + 1,)`` compute energy of one task on each host."""
    capacity: NDArray[np.int64]
    """``(E + 1,)`` twins each host can hold (the cloud: every user's)."""
    latency_weight: float
    """Reward per second of mean task latency (negative)."""
    migration_weight: float
    """Reward per second of summed migration downtime."""
    energy_weight: float
    """Reward per joule."""
    overload_weight: float
    """Reward per refused migration."""
    task_bits: float
    max_latency_s: float


class _World(NamedTuple):
    """What is drawn: users' places in their cells, uplink fading, tasks and moves."""

    n_edges: int
    cell_radius_m: float
    snr_per_gain: float
    """Transmit power over noise: the mean SNR is this times the path gain."""
    carrier_hz: float
    path_loss_exponent: float
    bandwidth_hz: float
    arrivals: InverseCdf
    """Tasks per user per slot (Poisson), one row per user."""
    mobility: InverseCdf
    """Next area of a user, one row per area."""
    edge_capacity_twins: int


class _View(NamedTuple):
    """The observation's scaling."""

    inv_capacity: NDArray[np.float64]
    """``(E + 1,)`` one over each host's capacity."""
    inv_load: float
    """Scale of the tasks pending on a host."""
    inv_pending: float
    """Scale of a user's pending tasks."""
    snr_scale: float
    """One over the observed SNR span (dB)."""


class _StatRows(NamedTuple):
    """Rows of the per-instance figures a kernel writes (``stats[row, m]`` for instance ``m``)."""

    latency: int
    downtime: int
    energy: int
    overloads: int
    migrations: int
    tasks: int
    # The signed reward terms, which sum to the reward.
    t_latency: int
    t_migration: int
    t_energy: int
    t_overload: int
    reward: int


_STAT = row_map(_StatRows)


@jitable
def _evaluate_row(model, target, host, area, tasks, uplink_bps, free, new_host, migrated,
                  refused, user_latency, host_tasks, stats, m):  # pragma: no cover - compiled
    """:meth:`DTMigrationCore.evaluate` for instance ``m``: fills its rows and ``stats[:, m]``.

    ``model`` is the core's :class:`_Model`; ``free`` and ``host_tasks`` are scratch of
    length ``E + 1`` (``host_tasks`` is also an output).
    """
    capacity = model.capacity
    n_hosts = capacity.shape[0]
    n_users = target.shape[0]
    # Admission into the capacity free at the start of the slot, in user order.
    for h in range(n_hosts):
        free[h] = capacity[h]
        host_tasks[h] = 0.0
    for i in range(n_users):
        free[host[i]] -= 1
    overloads = 0.0
    migrations = 0.0
    for i in range(n_users):
        want, now = target[i], host[i]
        move = want != now and free[want] > 0
        refuse = want != now and not move
        if move:
            free[want] -= 1
            migrations += 1.0
        if refuse:
            overloads += 1.0
        refused[i] = refuse
        migrated[i] = move
        new_host[i] = want if move else now
        host_tasks[new_host[i]] += tasks[i]
    # Latency of the slot's tasks, processor sharing on every stage.
    weighted = 0.0
    total = 0.0
    downtime = 0.0
    energy = 0.0
    for i in range(n_users):
        k = float(tasks[i])
        h, a, g = new_host[i], area[i], host[i]
        latency = 0.0
        if k > 0.0:
            bits = k * model.task_bits
            raw = (bits / max(uplink_bps[i], _MIN_RATE_BPS) + model.access_delay_s[a, h]
                   + bits * model.access_s_per_bit[a, h] + host_tasks[h] * model.task_compute_s[h])
            latency = min(raw, model.max_latency_s)
            energy += bits * model.access_j_per_bit[a, h]
        user_latency[i] = latency
        weighted += k * latency
        total += k
        downtime += model.migration_downtime_s[g, h]
        energy += model.migration_energy_j[g, h]
    for h in range(n_hosts):
        energy += host_tasks[h] * model.task_compute_j[h]
    mean_latency = weighted / max(total, 1.0)
    stats[_STAT.latency, m] = mean_latency
    stats[_STAT.downtime, m] = downtime
    stats[_STAT.energy, m] = energy
    stats[_STAT.overloads, m] = overloads
    stats[_STAT.migrations, m] = migrations
    stats[_STAT.tasks, m] = total
    stats[_STAT.t_latency, m] = t_lat = mean_latency * model.latency_weight
    stats[_STAT.t_migration, m] = t_mig = downtime * model.migration_weight
    stats[_STAT.t_energy, m] = t_en = energy * model.energy_weight
    stats[_STAT.t_overload, m] = t_ovl = overloads * model.overload_weight
    stats[_STAT.reward, m] = t_lat + t_mig + t_en + t_ovl


@jitable
def _place_user(world, i, u_pos, distance_m, mean_snr):  # pragma: no cover - compiled
    """Put user ``i`` uniformly in the disc of its cell and refresh its mean SNR."""
    distance_m[i] = d = max(world.cell_radius_m * np.sqrt(u_pos), 1.0)
    mean_snr[i] = world.snr_per_gain * radio.path_gain(d, world.carrier_hz,
                                                       world.path_loss_exponent)


@jitable
def _draw_slot(world, u, mean_snr, snr_db, uplink_bps, tasks):  # pragma: no cover - compiled
    """Poisson tasks and Rayleigh fading of the coming slot from the block's last ``2 U``.

    ``u[2 U: 3 U]`` are uniforms (task counts), ``u[3 U:]`` standard exponentials: the fading
    powers ``|h|^2 ~ Exp(1)`` themselves.
    """
    n_users = tasks.shape[0]
    for i in range(n_users):
        snr = mean_snr[i] * u[3 * n_users + i]
        snr_db[i] = radio.linear_to_db(snr)
        uplink_bps[i] = world.bandwidth_hz * radio.shannon_rate(snr)
        tasks[i] = inverse_cdf_draw(world.arrivals, i, u[2 * n_users + i])


@jitable
def _observe_row(view, area, host, tasks, snr_db, count, obs):  # pragma: no cover - compiled
    """Write one instance's observation (layout in the :class:`DTMigrationEnv` manual)."""
    n_hosts = view.inv_capacity.shape[0]
    n_edges = n_hosts - 1
    n_users = area.shape[0]
    obs[:] = 0.0
    for h in range(n_hosts):
        count[h] = 0.0
    load_at = n_users * (n_edges + n_hosts) + n_hosts
    for i in range(n_users):
        obs[i * n_edges + area[i]] = 1.0
        obs[n_users * n_edges + i * n_hosts + host[i]] = 1.0
        count[host[i]] += 1.0
        obs[load_at + host[i]] += tasks[i]
    occupancy_at = load_at - n_hosts
    for h in range(n_hosts):
        obs[occupancy_at + h] = count[h] * view.inv_capacity[h]
        obs[load_at + h] = min(obs[load_at + h] * view.inv_load, 1.0)
    pending_at = load_at + n_hosts
    for i in range(n_users):
        obs[pending_at + i] = min(tasks[i] * view.inv_pending, 1.0)
        snr = (snr_db[i] - SNR_OBS_LOW_DB) * view.snr_scale
        obs[pending_at + n_users + i] = min(max(snr, 0.0), 1.0)


@kernel
def _evaluate_kernel(model, target, host, area, tasks, uplink_bps, new_host, migrated, refused,
                     user_latency, host_tasks, stats):  # pragma: no cover - compiled
    model = _Model(*model)
    free = np.empty(host_tasks.shape[1], dtype=np.int64)
    for m in range(target.shape[0]):
        _evaluate_row(model, target[m], host[m], area[m], tasks[m], uplink_bps[m], free,
                      new_host[m], migrated[m], refused[m], user_latency[m], host_tasks[m],
                      stats, m)


@kernel
def _reset_kernel(world, view, idx, draws, area, host, tasks, distance_m, mean_snr,
                  snr_db, uplink_bps, obs):  # pragma: no cover - compiled
    world = _World(*world)
    view = _View(*view)
    n_edges = world.n_edges
    n_users = area.shape[1]
    count = np.empty(n_edges + 1)
    for j in range(idx.shape[0]):
        m = idx[j]
        u = draws[j]
        for h in range(n_edges + 1):
            count[h] = 0.0
        for i in range(n_users):
            a = min(int(u[i] * n_edges), n_edges - 1)
            area[m, i] = a
            _place_user(world, i, u[n_users + i], distance_m[m], mean_snr[m])
            # Follow-me placement within capacity, the overflow in the cloud.
            if count[a] < world.edge_capacity_twins:
                host[m, i] = a
                count[a] += 1.0
            else:
                host[m, i] = n_edges
        _draw_slot(world, u, mean_snr[m], snr_db[m], uplink_bps[m], tasks[m])
        _observe_row(view, area[m], host[m], tasks[m], snr_db[m], count, obs[m])


@kernel
def _step_kernel(model, world, view, actions, draws, area, host, tasks, distance_m,
                 mean_snr, snr_db, uplink_bps, obs, user_latency, stats
                 ):  # pragma: no cover - compiled
    model = _Model(*model)
    world = _World(*world)
    view = _View(*view)
    n_users = area.shape[1]
    n_hosts = view.inv_capacity.shape[0]
    free = np.empty(n_hosts, dtype=np.int64)
    scratch = np.empty(n_hosts)
    new_host = np.empty(n_users, dtype=np.int64)
    migrated = np.empty(n_users, dtype=np.bool_)
    refused = np.empty(n_users, dtype=np.bool_)
    for m in range(actions.shape[0]):
        u = draws[m]
        _evaluate_row(model, actions[m], host[m], area[m], tasks[m], uplink_bps[m], free,
                      new_host, migrated, refused, user_latency[m], scratch, stats, m)
        host[m] = new_host
        # Users move; one who changes area gets a new position in its new cell.
        for i in range(n_users):
            a = inverse_cdf_draw(world.mobility, area[m, i], u[i])
            if a != area[m, i]:
                area[m, i] = a
                _place_user(world, i, u[n_users + i], distance_m[m], mean_snr[m])
        _draw_slot(world, u, mean_snr[m], snr_db[m], uplink_bps[m], tasks[m])
        _observe_row(view, area[m], host[m], tasks[m], snr_db[m], scratch, obs[m])


class DTMigrationCore(BatchedCore[DTMigrationConfig]):
    """The twin-migration model on ``num_envs`` instances (see :class:`DTMigrationEnv`).

    Public state (leading axis ``N`` instances; ``E`` edges, ``U`` users, host ``E`` = cloud):
    ``area`` ``(N, U)`` access edge of each user; ``host`` ``(N, U)`` twin hosts; ``tasks``
    ``(N, U)`` tasks raised for the coming slot; ``uplink_bps`` ``(N, U)`` uplink rates of the
    coming slot; ``snr_db`` ``(N, U)``; ``distance_m`` ``(N, U)`` and ``mean_snr`` ``(N, U)``
    (linear, before fading; both redrawn when a user changes area); ``last_info`` (batch info of
    the last step, ``None`` after a full reset).

    Constant model tables (from the config): ``access_delay_s`` / ``access_s_per_bit`` /
    ``access_j_per_bit`` ``(E, E + 1)`` — fixed delay, seconds per bit and energy per bit from
    access edge ``a`` to host ``h``; ``migration_downtime_s`` / ``migration_energy_j``
    ``(E + 1, E + 1)``; ``task_compute_s`` / ``task_compute_j`` ``(E + 1,)`` — solo compute time
    and energy of one task on each host.

    Randomness per instance: one block at reset and at every step from
    :class:`qdrl_envs.core.Uniforms`, ``3 U`` uniforms (areas or moves, positions in the cell,
    Poisson task counts) then ``U`` standard exponentials (Rayleigh fading powers), so the
    vector twin reproduces the single env exactly.

    The model runs in compiled kernels (``_reset_kernel``, ``_step_kernel``,
    ``_evaluate_kernel``) over row functions shared by all three; the constants they need are
    packed once (``_model``, ``_world``, ``_view``: the packs :class:`_Model`, :class:`_World`,
    :class:`_View` as plain tuples, the template of :mod:`qdrl_envs.core`).
    """

    def render_ansi(self, row: int = 0) -> str:
        """Row ``row`` as text (see the env manual's Rendering)."""
        return _render_ansi(self, row)

    def render_rgb_array(self, row: int = 0) -> np.ndarray:
        """Row ``row`` as an RGB picture (see the env manual's Rendering)."""
        return _render_rgb_array(self, row)

    def __init__(self, config: DTMigrationConfig, num_envs: int) -> None:
        super().__init__(config, num_envs)
        c = config
        e, u = c.n_edges, c.n_users
        self.n_edges, self.n_users, self.n_hosts = e, u, e + 1
        self.cloud = e
        self.single_action_space = spaces.MultiDiscrete(np.full(u, e + 1, dtype=np.int64))
        self.obs_dim = u * e + u * (e + 1) + 2 * (e + 1) + 2 * u
        self.single_observation_space = spaces.Box(0.0, 1.0, (self.obs_dim,), dtype=np.float32)

        hops = ring_hops(e).astype(np.float64)
        # Access edge a -> host h (edge or cloud): fixed delay, s/bit (store-and-forward per hop).
        self.access_delay_s = np.zeros((e, e + 1))
        self.access_s_per_bit = np.zeros((e, e + 1))
        self.access_j_per_bit = np.zeros((e, e + 1))
        self.access_delay_s[:, :e] = hops * c.hop_delay_s
        self.access_s_per_bit[:, :e] = hops / c.edge_link_bps
        self.access_j_per_bit[:, :e] = hops * c.hop_energy_j_per_bit
        self.access_delay_s[:, e] = c.cloud_delay_s
        self.access_s_per_bit[:, e] = 1.0 / c.cloud_link_bps
        self.access_j_per_bit[:, e] = c.cloud_energy_j_per_bit
        # Host g -> host h migration of the twin state.
        host_delay = np.zeros((e + 1, e + 1))
        host_s_per_bit = np.zeros((e + 1, e + 1))
        host_j_per_bit = np.zeros((e + 1, e + 1))
        host_delay[:e, :] = self.access_delay_s
        host_delay[e, :e] = c.cloud_delay_s
        host_s_per_bit[:e, :] = self.access_s_per_bit
        host_s_per_bit[e, :e] = 1.0 / c.cloud_link_bps
        host_j_per_bit[:e, :] = self.access_j_per_bit
        host_j_per_bit[e, :e] = c.cloud_energy_j_per_bit
        self.migration_downtime_s = host_delay + c.twin_state_bits * host_s_per_bit
        self.migration_energy_j = c.twin_state_bits * host_j_per_bit
        np.fill_diagonal(self.migration_downtime_s, 0.0)
        np.fill_diagonal(self.migration_energy_j, 0.0)
        cycles = c.cycles_per_bit * c.task_bits
        cpu = np.full(e + 1, c.edge_cpu_hz)
        cpu[e] = c.cloud_cpu_hz
        self.task_compute_s = cycles / cpu
        self.task_compute_j = cycles * np.where(np.arange(e + 1) == e,
                                                c.cloud_energy_j_per_cycle,
                                                c.edge_energy_j_per_cycle)
        self.capacity = np.full(e + 1, c.edge_capacity_twins, dtype=np.int64)
        self.capacity[e] = u  # the cloud never refuses

        self.p_tx_w = float(radio.dbm_to_watt(c.tx_power_dbm))
        self.noise_w = float(radio.noise_power_w(c.bandwidth_hz, c.noise_figure_db))
        self._host_eye = np.eye(e + 1)
        inv_pending = 1.0 / max(1.0, c.task_rate + 3.0 * math.sqrt(c.task_rate))
        # What the kernels take, as plain tuples (numba dispatches those fast).
        self._model = plain(_Model(
            access_delay_s=self.access_delay_s, access_s_per_bit=self.access_s_per_bit,
            access_j_per_bit=self.access_j_per_bit,
            migration_downtime_s=self.migration_downtime_s,
            migration_energy_j=self.migration_energy_j, task_compute_s=self.task_compute_s,
            task_compute_j=self.task_compute_j, capacity=self.capacity,
            latency_weight=-1.0 / c.latency_scale_s,
            migration_weight=-c.beta_migration / (u * c.latency_scale_s),
            energy_weight=-c.gamma_energy / (u * c.energy_scale_j),
            overload_weight=-c.overload_penalty / u,
            task_bits=float(c.task_bits), max_latency_s=float(c.max_latency_s)))
        self._world = plain(_World(
            n_edges=e, cell_radius_m=float(c.cell_radius_m),
            snr_per_gain=self.p_tx_w / self.noise_w, carrier_hz=float(c.carrier_hz),
            path_loss_exponent=float(c.path_loss_exponent), bandwidth_hz=float(c.bandwidth_hz),
            arrivals=PoissonArrivals(np.full(u, c.task_rate)).table,
            mobility=ring_mobility(e, c.p_stay).table,
            edge_capacity_twins=int(c.edge_capacity_twins)))
        self._view = plain(_View(inv_capacity=1.0 / self.capacity, inv_load=inv_pending / u,
                                 inv_pending=inv_pending,
                                 snr_scale=1.0 / (SNR_OBS_HIGH_DB - SNR_OBS_LOW_DB)))
        self._block = 4 * u
        self._uniforms = Uniforms(num_envs)

        n = num_envs
        self.area = np.zeros((n, u), dtype=np.int64)
        self.host = np.zeros((n, u), dtype=np.int64)
        self.tasks = np.zeros((n, u), dtype=np.int64)
        self.distance_m = np.ones((n, u))
        self.mean_snr = np.ones((n, u))
        self.snr_db = np.zeros((n, u))
        self.uplink_bps = np.ones((n, u))
        self._obs = np.zeros((n, self.obs_dim), dtype=np.float32)
        self.last_info: dict[str, Any] | None = None

    # -- the slot model ----------------------------------------------------------------------

    def occupancy(self, host: ArrayLike) -> NDArray[np.float64]:
        """Twins on each host ``(M, E + 1)`` for hosts ``(M, U)``."""
        return self._host_eye[np.asarray(host)].sum(axis=-2)

    def evaluate(self, target: ArrayLike, host: ArrayLike, area: ArrayLike, tasks: ArrayLike,
                 uplink_bps: ArrayLike) -> SlotEvaluation:
        """Score requested hosts ``target`` for one slot, without changing any state.

        Every argument has a leading axis ``M`` (a batch of instances, or of candidate
        placements for one instance) and shape ``(M, U)``; they broadcast against each other.

        Admission: a migration (target differs from the current host) is accepted only into
        capacity that is free at the start of the slot, in user-index order; twins leaving a
        server free their place from the next slot. A refused twin stays where it is and counts
        as an overload. Then every user's ``k`` tasks of ``D`` bits go up its uplink, across the
        backhaul to the host, and are computed there, with processor sharing on every stage::

            uplink   = k D / r_u
            backhaul = hops (hop_delay + k D / edge_link)    (edge host, ring of edges)
                     = cloud_delay + k D / cloud_link         (cloud host); 0 at the access edge
            compute  = n_h c D / f_h                          (n_h tasks on host h this slot)

        the sum capped at ``max_latency_s``.

        Args:
            target: Requested hosts (``E`` = cloud).
            host: Current hosts.
            area: Access edges.
            tasks: Tasks per user this slot.
            uplink_bps: Uplink rates (bit/s).

        Returns:
            The :class:`SlotEvaluation`.

        Raises:
            ValueError: If the shapes do not broadcast to ``(M, U)`` or a host or area index
                is out of range.
        """
        u, h = self.n_users, self.n_hosts
        target, host, area, tasks, uplink_bps = np.broadcast_arrays(
            np.asarray(target), np.asarray(host), np.asarray(area), np.asarray(tasks),
            np.asarray(uplink_bps))
        if target.ndim != 2 or target.shape[1] != u:
            raise ValueError(f"evaluate takes arrays of shape (M, {u}), got {target.shape}")
        for name, value, bound in (("target", target, h), ("host", host, h),
                                   ("area", area, self.n_edges)):
            if value.size and (value.min() < 0 or value.max() >= bound):
                raise ValueError(f"{name} must be in [0, {bound - 1}], got {value.tolist()}")
        m = target.shape[0]
        new_host = np.empty((m, u), dtype=np.int64)
        migrated = np.empty((m, u), dtype=bool)
        refused = np.empty((m, u), dtype=bool)
        user_latency = np.empty((m, u))
        host_tasks = np.empty((m, h))
        stats = np.empty((len(_STAT), m))
        # Copies: broadcast views may not be handed to a kernel as writeable arrays.
        _evaluate_kernel(self._model, *(np.array(x, dtype=np.int64, order="C")
                                       for x in (target, host, area, tasks)),
                         np.array(uplink_bps, dtype=np.float64, order="C"), new_host, migrated,
                         refused, user_latency, host_tasks, stats)
        return SlotEvaluation(host=new_host, migrated=migrated, refused=refused,
                              user_latency_s=user_latency, latency_s=stats[_STAT.latency],
                              downtime_s=stats[_STAT.downtime], energy_j=stats[_STAT.energy],
                              host_tasks=host_tasks, reward_terms=self._terms(stats),
                              reward=stats[_STAT.reward])

    @staticmethod
    def _terms(stats: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
        return {"latency": stats[_STAT.t_latency], "migration": stats[_STAT.t_migration],
                "energy": stats[_STAT.t_energy], "overload": stats[_STAT.t_overload]}

    # -- BatchedCore -------------------------------------------------------------------------

    def reset(self, rngs: Sequence[np.random.Generator], idx: np.ndarray,
              options: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Draw areas, positions, channels and first tasks; place twins at their access edge.

        Twins are placed at their user's access edge in user order while it has room, the
        rest in the cloud.

        Raises:
            ValueError: If ``options`` is given (this env takes no reset options).
        """
        if options:
            raise ValueError(f"DTMigration takes no reset options, got {sorted(options)}")
        draws = self._uniforms.take(rngs, idx, self._block, exponential=self.n_users)
        obs = self._obs.copy()  # a new array; instances not reset keep their rows
        _reset_kernel(self._world, self._view, np.asarray(idx, dtype=np.int64), draws, self.area,
                      self.host, self.tasks, self.distance_m, self.mean_snr, self.snr_db,
                      self.uplink_bps, obs)
        self._obs = obs
        if len(idx) == self.num_envs:
            self.last_info = None
        return {}

    def step(self, actions: np.ndarray, rngs: Sequence[np.random.Generator]) -> StepResult:
        """Migrate, serve the slot's tasks on the new placement, then move users and draw."""
        n, u = self.num_envs, self.n_users
        user_latency = np.empty((n, u))
        stats = np.empty((len(_STAT), n))
        draws = self._uniforms.take(rngs, None, self._block, exponential=self.n_users)
        obs = np.empty_like(self._obs)  # a new array; the kernel writes every row
        _step_kernel(self._model, self._world, self._view, actions, draws, self.area, self.host,
                     self.tasks, self.distance_m, self.mean_snr, self.snr_db, self.uplink_bps,
                     obs, user_latency, stats)
        self._obs = obs
        info: dict[str, Any] = {
            "latency_s": stats[_STAT.latency],
            "user_latency_s": user_latency,
            "migrations": stats[_STAT.migrations].astype(np.int64),
            "overloads": stats[_STAT.overloads].astype(np.int64),
            "downtime_s": stats[_STAT.downtime],
            "energy_j": stats[_STAT.energy],
            "tasks": stats[_STAT.tasks].astype(np.int64),
            "hosts": self.host.copy(),
            "reward_terms": self._terms(stats),
        }
        self.last_info = info
        return StepResult(stats[_STAT.reward], np.zeros(n, dtype=bool), info)

    def observe(self) -> np.ndarray:
        """Observations ``(N, obs_dim)`` float32 in ``[0, 1]`` (fresh after every reset/step)."""
        return self._obs


# --------------------------------------------------------------------------------------------
# The environments
# --------------------------------------------------------------------------------------------


class DTMigrationEnv(CoreEnv[DTMigrationConfig]):
    r"""Place and migrate the digital twins of moving users over edge servers and a cloud.

    ## Description

    Multi-tier computing for digital twins (paper Sec. V-F2 (i), Fig. 10; the setting of its
    ref. [197], Chen et al., "Distributed digital twin migration in multi-tier computing
    systems", IEEE JSTSP 2024). ``N`` areas, each with an edge server; the edges form a ring
    backhaul, and every edge reaches one cloud. ``U`` users move between areas (a Markov chain:
    stay with ``p_stay``, else step to a neighbouring area). Each user has a digital twin hosted
    on an edge server or in the cloud; every slot the user raises ``k ~ Poisson(task_rate)``
    twin-update tasks of ``D = task_bits`` bits needing ``c = cycles_per_bit`` CPU cycles per bit.
    The agent chooses, every slot, where each twin is hosted. Twin placement in edge networks
    follows Lu et al., "Low-latency federated learning and blockchain for edge association in
    digital twin empowered 6G networks" (IEEE TII 2021); migration as a cost-versus-latency
    decision follows Wang et al., "Dynamic service migration in mobile edge computing based on
    Markov decision process" (IEEE/ACM ToN 2019).

    **Task latency** (:meth:`DTMigrationCore.evaluate`). A user with ``k`` tasks in area ``a``
    whose twin is on host ``h``::

        uplink   = k D / r,   r = W log2(1 + P g |h|^2 / sigma^2)    (Shannon, Rayleigh fading)
        backhaul = 0                                   if h = a
                 = hops(a, h) (hop_delay + k D / edge_link)    edge h, ring hops
                 = cloud_delay + k D / cloud_link             cloud
        compute  = n_h c D / f_h

    where ``n_h`` is the number of tasks host ``h`` computes this slot. Every stage is shared
    equally by the tasks on it (processor sharing, Kleinrock, *Queueing Systems* Vol. 2, 1976):
    ``n`` equal tasks that start together all finish after ``n`` times the solo time. The cloud
    CPU is 10x an edge's but the cloud is far. A task's latency is capped at ``max_latency_s``
    (counted as failed at the cap), so deep fades and overloads stay finite.

    **Migration** of a twin from host ``g`` to host ``b`` costs a downtime ``delay(g, b) +
    S / rate(g, b)`` (twin state ``S = twin_state_bits`` over the same backhaul, hop by hop) and
    transport energy ``S x energy per bit``. Each edge hosts at most ``edge_capacity_twins``
    twins (the cloud is unbounded); a migration is admitted only into capacity free at the start
    of the slot, in user order — a refused request leaves the twin where it is and costs
    ``overload_penalty``: that is the agent's choice, not an error.

    Energy: compute ``c D`` cycles x J/cycle of the host (edge ``1e-9``, cloud ``3e-10``) plus
    task and migration transport (J/bit per hop, or to the cloud). User transmit energy does not
    depend on the placement and is left out.

    Uplink: path gain ``PL(d)^-1`` with log-distance path loss (free space at 1 m, exponent 3,
    3.5 GHz), ``d`` uniform over a disc of ``cell_radius_m`` (redrawn when the user changes
    area), Rayleigh block fading redrawn every slot; noise ``-174 dBm/Hz + 10 log10 W + NF``.

    ## Action Space

    ``MultiDiscrete([N + 1] * U)``: the requested host of each twin this slot, ``0..N-1`` the
    edge servers and ``N`` the cloud; choosing the current host means "stay".

    ## Observation Space

    ``Box(0, 1, (U N + U (N + 1) + 2 (N + 1) + 2 U,), float32)``, all entries in ``[0, 1]``; the
    observation at step ``t`` describes the slot the action at step ``t`` acts on (its tasks
    and channels are already known):

    | Slice         | Entry                                           | Scaling              |
    |---------------|-------------------------------------------------|----------------------|
    | ``U N``       | access area of each user, one-hot               | 0/1                  |
    | ``U (N + 1)`` | current host of each twin, one-hot (cloud last) | 0/1                  |
    | ``N + 1``     | twins on each host                              | / capacity (cloud: U)|
    | ``N + 1``     | tasks pending on each host if nobody moves      | / (U s), clipped     |
    | ``U``         | tasks pending per user                          | / s, clipped         |
    | ``U``         | uplink SNR (dB)                                 | -10 -> 0, 40 -> 1, clipped |

    with ``s = max(1, task_rate + 3 sqrt(task_rate))``.

    ## Rewards

    ``-(L / L0 + beta D / (U L0) + gamma E / (U E0) + rho O / U)``: ``L`` the mean task latency
    of the slot (s), ``D`` the summed migration downtime (s), ``E`` the energy (J), ``O`` the
    refused migrations, ``L0 = latency_scale_s`` (0.1 s), ``E0 = energy_scale_j`` (1 J),
    ``beta = beta_migration``, ``gamma = gamma_energy``, ``rho = overload_penalty``. With the
    defaults a slot of 50 ms mean latency and no migration scores about -0.5.
    ``info["reward_terms"]``: the four signed contributions (``latency``, ``migration``,
    ``energy``, ``overload``), which sum to the reward.

    ``info``: ``latency_s`` (mean task latency), ``user_latency_s`` (per user), ``migrations``,
    ``overloads``, ``downtime_s``, ``energy_j``, ``tasks``, ``hosts``, ``reward_terms``.

    ## Starting State

    Areas uniform, positions uniform in the cell, twins at their access edge in user order while
    it has room (the rest in the cloud), fresh fading and tasks.

    ## Episode End

    No terminal state. Truncated after 100 slots by the registered time limit.

    ## Arguments

    ``gym.make("qdrl/DTMigration-v0", **fields)`` with fields of :class:`DTMigrationConfig`:

    | Field                      | Default | Unit / range                               |
    |----------------------------|---------|--------------------------------------------|
    | ``n_edges``                | 4       | N, [1, 16]                                 |
    | ``n_users``                | 6       | U, [1, 32]                                 |
    | ``edge_capacity_twins``    | 2       | twins per edge, [1, 32]                    |
    | ``p_stay``                 | 0.8     | [0, 1]                                     |
    | ``task_rate``              | 1.0     | tasks / user / slot, [0, 1000]             |
    | ``task_bits``              | 0.5e6   | bit                                        |
    | ``cycles_per_bit``         | 200     | cycles / bit                               |
    | ``edge_cpu_hz``            | 10e9    | cycles / s                                 |
    | ``cloud_cpu_hz``           | 100e9   | cycles / s                                 |
    | ``bandwidth_hz``           | 20e6    | Hz per user                                |
    | ``tx_power_dbm``           | 23      | dBm                                        |
    | ``noise_figure_db``        | 7       | dB                                         |
    | ``carrier_hz``             | 3.5e9   | Hz                                         |
    | ``path_loss_exponent``     | 3.0     | [1.5, 6]                                   |
    | ``cell_radius_m``          | 100     | m                                          |
    | ``hop_delay_s``            | 5e-3    | s per edge-edge hop                        |
    | ``edge_link_bps``          | 100e6   | bit/s per hop                              |
    | ``cloud_delay_s``          | 30e-3   | s edge <-> cloud                           |
    | ``cloud_link_bps``         | 1e9     | bit/s                                      |
    | ``twin_state_bits``        | 5e6     | bit                                        |
    | ``edge_energy_j_per_cycle``| 1e-9    | J / cycle                                  |
    | ``cloud_energy_j_per_cycle``| 3e-10  | J / cycle                                  |
    | ``hop_energy_j_per_bit``   | 5e-8    | J / bit per hop                            |
    | ``cloud_energy_j_per_bit`` | 5e-7    | J / bit                                    |
    | ``max_latency_s``          | 1.0     | s, latency cap                             |
    | ``latency_scale_s``        | 0.1     | s per reward unit                          |
    | ``energy_scale_j``         | 1.0     | J per user per reward unit / gamma         |
    | ``beta_migration``         | 0.5     | >= 0                                       |
    | ``gamma_energy``           | 0.1     | >= 0                                       |
    | ``overload_penalty``       | 0.5     | >= 0                                       |

    ``render_mode``: ``"ansi"`` (a table of users, areas and hosts) or ``"rgb_array"`` (the
    edges on their ring, full ones in red, the cloud in the middle, each user outside its area
    with a dashed line to its twin's host).

    ## Version History

    * v0: first version.
    """

    config_cls = DTMigrationConfig
    core_cls = DTMigrationCore
    core: DTMigrationCore



class DTMigrationVectorEnv(CoreVectorEnv[DTMigrationConfig]):
    """NumPy-batched twin of :class:`DTMigrationEnv` (same core; see its manual)."""

    config_cls = DTMigrationConfig
    core_cls = DTMigrationCore


# --------------------------------------------------------------------------------------------
# Rendering (one row of a core)
# --------------------------------------------------------------------------------------------


def _host_name(core: DTMigrationCore, h: int) -> str:
    return "cloud" if h == core.cloud else f"edge{h}"


def _render_ansi(core: DTMigrationCore, row: int) -> str:
    occ = core.occupancy(core.host[row:row + 1])[0]
    lines = [f"DTMigration  N={core.n_edges} edges  U={core.n_users} users  "
             f"capacity {core.config.edge_capacity_twins}/edge"]
    info = core.last_info
    if info is not None:
        lines.append(f"last slot: latency {info['latency_s'][row] * 1e3:.1f} ms  migrations "
                     f"{info['migrations'][row]}  overloads {info['overloads'][row]}  energy "
                     f"{info['energy_j'][row]:.2f} J")
    lines.append("host twins: " + "  ".join(f"{_host_name(core, h)}={int(occ[h])}"
                                            for h in range(core.n_hosts)))
    lines.append(" user | area  | host  | tasks | SNR dB")
    for i in range(core.n_users):
        host = _host_name(core, core.host[row, i])
        lines.append(f" {i:4d} | edge{core.area[row, i]:<2d}| {host:<6}"
                     f"| {core.tasks[row, i]:5d} | {core.snr_db[row, i]:6.1f}")
    return "\n".join(lines) + "\n"


def _render_rgb_array(core: DTMigrationCore, row: int) -> np.ndarray:
    e, u = core.n_edges, core.n_users
    angles = np.pi / 2 + 2 * np.pi * np.arange(e) / e
    edge_xy = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    cloud_xy = np.zeros(2)
    host_xy = np.vstack([edge_xy, cloud_xy])
    occ = core.occupancy(core.host[row:row + 1])[0]
    fig = agg_figure(5, 5)
    ax = fig.add_subplot(1, 1, 1)
    for a in range(e):
        if e > 1:
            ax.plot(*np.stack([edge_xy[a], edge_xy[(a + 1) % e]]).T, "-", color="0.7", lw=1)
        ax.plot(*np.stack([edge_xy[a], cloud_xy]).T, ":", color="0.8", lw=1)
    full = occ[:e] >= core.config.edge_capacity_twins
    ax.scatter(edge_xy[:, 0], edge_xy[:, 1], s=900, marker="s",
               c=np.where(full, "salmon", "lightgreen"), edgecolors="k", zorder=2)
    ax.scatter([cloud_xy[0]], [cloud_xy[1]], s=1400, marker="o", c="lightblue",
               edgecolors="k", zorder=2)
    for h in range(e + 1):
        ax.annotate(f"{_host_name(core, h)}\n{int(occ[h])} twins", host_xy[h], ha="center",
                    va="center", fontsize=7, zorder=3)
    # Users sit outside their area's edge, spread on an arc (index order, no randomness).
    for i in range(u):
        same = np.flatnonzero(core.area[row] == core.area[row, i])
        slot = int(np.searchsorted(same, i))
        spread = (slot - (same.size - 1) / 2) * min(0.25, 1.2 / max(e, 1))
        ang = angles[core.area[row, i]] + spread
        pos = 1.55 * np.array([np.cos(ang), np.sin(ang)])
        tgt = host_xy[core.host[row, i]]
        colour = f"C{i % 10}"
        ax.plot([pos[0], tgt[0]], [pos[1], tgt[1]], "--", color=colour, lw=1, alpha=0.8)
        ax.scatter([pos[0]], [pos[1]], s=40, color=colour, edgecolors="k", zorder=4)
        ax.annotate(f"u{i}", pos, textcoords="offset points", xytext=(4, 4), fontsize=6)
    ax.set_xlim(-1.9, 1.9)
    ax.set_ylim(-1.9, 1.9)
    ax.set_aspect("equal")
    ax.axis("off")
    title = "DT migration: users (dots) -> twin hosts"
    if core.last_info is not None:
        title += f"\nlatency {core.last_info['latency_s'][row] * 1e3:.1f} ms"
    ax.set_title(title, fontsize=9)
    return figure_rgb(fig)
