"""INSTINCT's surrogate and acquisition: a neural bandit over a fixed pool of candidate representations.

Lin et al., "Use Your INSTINCT: INSTruction optimization usIng Neural bandits Coupled with Transformers".
A one-hidden-layer ReLU MLP predicts a candidate's score from its representation (e.g. a mean-pooled
transformer embedding). Exploration treats the network's gradient w.r.t. all its weights as the
candidate's features (the neural tangent view) with the diagonal covariance U of NeuralUCB / NeuralTS,
as the paper's code does. Pure numpy: the network is small enough that analytic gradients and
full-batch Adam are fast on a CPU, so the optimizer needs no torch.

Where this departs from the paper's code, measured on synthetic pools (see tests/test_surrogate.py):
the paper initialises every weight from N(0, 1) and fits raw scores, which leaves the untrained part of
the function at a scale of hundreds of score units, and a bandit built that way chose worse than random
search on a synthetic pool. Here the network uses PyTorch's default (fan-in) initialisation, inputs have
unit norm on average and scores are standardised before fitting. That shrinks the per-parameter squared
gradients from about 1 to 1e-6..1e-2, so λ shrinks with them (see ``NeuralBanditConfig``); ν, lr, width,
weight decay λ/n, U and the acquisition rules are the paper's.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from threadpoolctl import threadpool_limits

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8

_Layers = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class NeuralBanditConfig:
    """ν, lr and width are the paper's; λ and ``steps`` are not.

    λ: the paper's 0.1 sat well below its per-parameter squared gradients (about 1, with N(0, 1) weights),
    so one pick removed most of σ at and near that candidate. With this module's initialisation they are
    1e-6..1e-2, and at λ = 0.1 σ at a pick only halved: repeated ``select(1)`` calls returned the same
    candidate in 7 of 10 synthetic cases, and TS did no better than random search on a 576-dimensional
    pool. λ = 1e-3 restores the paper's behaviour (σ at a pick drops to about a fifth; 0 of 10 repeats)
    and found the best of 150 or 300 candidates more often with both acquisitions; 1e-2 lay in between.
    ``steps`` (full-batch Adam steps per fit; the paper ran 1000) keeps a fit on 200 observations of a
    576-dimensional embedding well under a second on one core; 1000 steps predicted unobserved
    candidates no better.
    """

    hidden: int = 100
    lam: float = 1e-3  # prior precision of U; the weight decay is lam / n_observations
    nu: float = 1.0  # σ grows as sqrt(nu); σ is in units of the observed scores' standard deviation
    lr: float = 1e-3
    steps: int = 500
    acquisition: Literal["ucb", "ts"] = "ucb"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.steps < 0:
            raise ValueError("hidden must be >= 1 and steps >= 0")
        if self.lam <= 0 or self.nu < 0 or self.lr <= 0:
            raise ValueError("lam and lr must be > 0, nu >= 0")
        if self.acquisition not in ("ucb", "ts"):
            raise ValueError(f"acquisition must be 'ucb' or 'ts', not {self.acquisition!r}")


def _unpack(flat: np.ndarray, dim: int, hidden: int) -> _Layers:
    """Views (w1, b1, w2, b2) into one flat parameter-sized vector: Adam and U work on the flat array,
    the layers on their shapes, and writing to a view writes to ``flat``."""
    n1 = hidden * dim
    return flat[:n1].reshape(hidden, dim), flat[n1:n1 + hidden], flat[n1 + hidden:n1 + 2 * hidden], flat[n1 + 2 * hidden:]


def init_params(dim: int, hidden: int, rng: np.random.Generator) -> np.ndarray:
    """PyTorch's default ``nn.Linear`` initialisation (uniform, ±1/sqrt(fan_in)), flat in ``_unpack`` order.

    Not the paper's N(0, 1): with it the initial network's output varies by hundreds across candidates,
    and a few dozen observations cannot pull the unobserved ones back to the scores' scale."""
    theta = np.empty(hidden * dim + 2 * hidden + 1)
    w1, b1, w2, b2 = _unpack(theta, dim, hidden)
    w1[:], b1[:] = rng.uniform(-1, 1, w1.shape) / np.sqrt(dim), rng.uniform(-1, 1, hidden) / np.sqrt(dim)
    w2[:], b2[:] = rng.uniform(-1, 1, hidden) / np.sqrt(hidden), rng.uniform(-1, 1, 1) / np.sqrt(hidden)
    return theta


def forward(theta: np.ndarray, x: np.ndarray, hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """Hidden pre-activations (n, hidden) and outputs (n,)."""
    w1, b1, w2, b2 = _unpack(theta, x.shape[1], hidden)
    pre = x @ w1.T + b1
    return pre, np.maximum(pre, 0.0) @ w2 + b2[0]


def gradients(theta: np.ndarray, x: np.ndarray, hidden: int) -> np.ndarray:
    """Per-example gradient of the output w.r.t. all parameters, (n, n_params), in ``_unpack`` order."""
    w2 = _unpack(theta, x.shape[1], hidden)[2]
    pre, _ = forward(theta, x, hidden)
    gate = w2 * (pre > 0)
    d_w1 = (gate[:, :, None] * x[:, None, :]).reshape(len(x), -1)
    return np.hstack([d_w1, gate, np.maximum(pre, 0.0), np.ones((len(x), 1))])


def sigma(theta: np.ndarray, u: np.ndarray, x: np.ndarray, hidden: int, lam_nu: float) -> np.ndarray:
    """sqrt(Σ λ·ν·g²/U) over all parameters, per candidate, without building the (n, n_params) gradients
    of ``gradients``: the first layer's squared gradient factorises as gate² ⊗ x², so its sum over that
    layer is one matrix product; this keeps a pick cheap for pools of thousands."""
    w2 = _unpack(theta, x.shape[1], hidden)[2]
    u_w1, u_b1, u_w2, u_b2 = _unpack(u, x.shape[1], hidden)
    pre, _ = forward(theta, x, hidden)
    gate2 = (w2 * (pre > 0)) ** 2
    total: np.ndarray = np.einsum("nh,nh->n", gate2, (x * x) @ (1.0 / u_w1).T + 1.0 / u_b1)
    total += np.maximum(pre, 0.0) ** 2 @ (1.0 / u_w2) + 1.0 / u_b2[0]
    return np.sqrt(lam_nu * total)


def _train(theta: np.ndarray, x: np.ndarray, y: np.ndarray, hidden: int, config: NeuralBanditConfig) -> np.ndarray:
    """Trained copy of ``theta``: full-batch Adam on the mean squared error with L2 weight decay λ/n (as
    torch's Adam applies ``weight_decay``, and as the paper's code sets it). Full batch because a few
    hundred points make one cheap matrix product; float32 because it halves the time of those products
    and a fit stopped after a fixed number of steps gains nothing from more precision."""
    theta, x, y = theta.astype(np.float32), x.astype(np.float32), y.astype(np.float32)
    n, dim = x.shape
    w1, b1, w2, b2 = _unpack(theta, dim, hidden)
    grad = np.empty_like(theta)
    g_w1, g_b1, g_w2, g_b2 = _unpack(grad, dim, hidden)
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    (beta1, beta2), decay = _ADAM_BETAS, config.lam / n
    for t in range(1, config.steps + 1):
        pre = x @ w1.T + b1
        act = np.maximum(pre, 0.0)
        d_out = (act @ w2 + b2[0] - y) * (2.0 / n)
        d_pre = np.multiply.outer(d_out, w2) * (pre > 0)
        np.matmul(d_pre.T, x, out=g_w1)
        g_b1[:], g_w2[:], g_b2[:] = d_pre.sum(axis=0), act.T @ d_out, d_out.sum()
        grad += decay * theta
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        theta -= (config.lr / (1 - beta1**t)) * m / (np.sqrt(v / (1 - beta2**t)) + _ADAM_EPS)
    return theta.astype(np.float64)


def standardise(features: np.ndarray) -> np.ndarray:
    """Per-feature zero mean and unit variance, fitted on the whole pool, then scaled to unit mean norm.

    Per feature: transformer hidden states carry a few "massive" dimensions orders of magnitude larger
    than the rest; unscaled, they alone would set the ReLU pre-activations and the gradients behind σ.
    On the pool rather than the observations: the pool is known before the first query, so the transform
    exists for the random start and stays fixed across refits, which keeps the gradients (and so U,
    accumulated over the run) comparable. Unit norm: NeuralUCB's analysis assumes it, it keeps σ's scale
    independent of the embedding's size, and with 576 dimensions it made the fitted network generalise
    to unobserved candidates far better than unit-variance inputs. Constant features map to 0, not NaN.
    """
    mean, std = features.mean(axis=0), features.std(axis=0)
    varies = std > 1e-12 * np.maximum(1.0, np.abs(mean))
    z = (features - mean) / np.where(varies, std, 1.0)
    unit: np.ndarray = z / np.sqrt(max(1, int(np.count_nonzero(varies))))  # numpy's stubs: Any
    return unit


class NeuralBandit:
    """NeuralUCB / NeuralTS over a fixed candidate pool, picking batches one candidate at a time.

    U (the diagonal of the gradient features' precision, prior λ) accumulates the squared gradient of
    every candidate the bandit picks, at pick time as in the paper's code, and survives refits. Updating
    it after each pick of a batch lowers σ around the pending picks, so one batch spreads out instead of
    asking k times about one region while those queries run in parallel.
    """

    def __init__(self, features: np.ndarray, config: NeuralBanditConfig = NeuralBanditConfig()) -> None:
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or len(features) == 0 or not np.all(np.isfinite(features)):
            raise ValueError("features must be a finite, non-empty (n_candidates, dim) array")
        self.config = config
        self._x = standardise(features)
        init_seed, pick_seed = np.random.SeedSequence(config.seed).spawn(2)
        self._theta0 = init_params(self._x.shape[1], config.hidden, np.random.default_rng(init_seed))
        self._theta = self._theta0
        self._u = np.full(self._theta0.size, config.lam)
        self._rng = np.random.default_rng(pick_seed)
        self._y_mean, self._y_scale = 0.0, 1.0
        self.n_observations = 0

    def fit(self, indices: Sequence[int], scores: Sequence[float]) -> None:
        """Train from the same seeded initial weights on all observations so far, as the paper's code
        does: a fresh start keeps the fit independent of the order observations arrived in, and the same
        start keeps the gradient features that U has accumulated comparable from one fit to the next.
        Scores are standardised so that ν is in units of their spread, whatever the metric's scale."""
        idx, y = np.asarray(indices, dtype=np.int64), np.asarray(scores, dtype=np.float64)
        if idx.ndim != 1 or len(idx) == 0 or idx.shape != y.shape:
            raise ValueError("fit needs one score per index and at least one observation")
        if idx.min() < 0 or idx.max() >= len(self._x) or not np.all(np.isfinite(y)):
            raise ValueError("indices must lie in the pool and scores must be finite")
        spread = float(y.std())
        self._y_mean, self._y_scale = float(y.mean()), spread if spread > 0 else 1.0
        targets = (y - self._y_mean) / self._y_scale
        with threadpool_limits(1, user_api="blas"):  # small matrices: threads only contend, badly on a busy box
            self._theta = _train(self._theta0, self._x[idx], targets, self.config.hidden, self.config)
        self.n_observations = len(idx)

    def predict(self, indices: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Predicted score μ and exploration width σ (including ν), both in the scores' units."""
        x = self._x if indices is None else self._x[np.asarray(indices, dtype=np.int64)]
        mu = forward(self._theta, x, self.config.hidden)[1] * self._y_scale + self._y_mean
        return mu, self._sigma(x) * self._y_scale

    def select(self, k: int, exclude: Collection[int] = ()) -> list[int]:
        """Up to ``k`` distinct candidates outside ``exclude`` (fewer when fewer remain). Before the first
        fit they are seeded random picks that leave U alone, as INSTINCT starts from random queries."""
        if k < 0:
            raise ValueError("k must be >= 0")
        allowed = np.ones(len(self._x), dtype=bool)
        allowed[[i for i in exclude if 0 <= i < len(self._x)]] = False
        k = min(k, int(allowed.sum()))
        if self.n_observations == 0:
            return [int(i) for i in self._rng.choice(np.flatnonzero(allowed), size=k, replace=False)]
        mu = forward(self._theta, self._x, self.config.hidden)[1]
        picks: list[int] = []
        for _ in range(k):
            pick = int(np.argmax(np.where(allowed, self._acquisition(mu, self._sigma(self._x)), -np.inf)))
            self._u += gradients(self._theta, self._x[pick:pick + 1], self.config.hidden)[0] ** 2
            allowed[pick] = False
            picks.append(pick)
        return picks

    def _acquisition(self, mu: np.ndarray, width: np.ndarray) -> np.ndarray:
        if self.config.acquisition == "ts":
            return self._rng.normal(mu, width)
        upper: np.ndarray = mu + width  # numpy's stubs: Any
        return upper

    def _sigma(self, x: np.ndarray) -> np.ndarray:
        return sigma(self._theta, self._u, x, self.config.hidden, self.config.lam * self.config.nu)
