"""INSTINCT's surrogate and acquisition: a neural bandit over a fixed pool of candidate representations.

Lin et al., "Use Your INSTINCT: INSTruction optimization usIng Neural bandits Coupled with Transformers".
A one-hidden-layer ReLU MLP predicts a candidate's score from its representation (e.g. a mean-pooled
transformer embedding). Exploration treats the network's gradient w.r.t. all its weights as the
candidate's features (the neural tangent view) with the diagonal covariance of NeuralUCB / NeuralTS, as
the paper's code does. Pure numpy: the network is small enough that analytic gradients and full-batch
Adam are fast on a CPU, and the optimizer then needs no torch.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


@dataclass(frozen=True)
class NeuralBanditConfig:
    """Defaults follow the paper's code, except ``steps``: full-batch steps sized to fit well under a
    second for a few hundred observations of a 576-dimensional embedding on two cores."""

    hidden: int = 100
    lam: float = 0.1  # prior precision of U and (divided by n) the weight decay
    nu: float = 1.0  # exploration scale
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


Layers = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def unpack(flat: np.ndarray, dim: int, hidden: int) -> Layers:
    """Views (w1, b1, w2, b2) into a flat parameter-sized vector, so that Adam and U work on one array
    while the layers see their shapes; writing to a view writes to ``flat``."""
    n1 = hidden * dim
    return flat[:n1].reshape(hidden, dim), flat[n1:n1 + hidden], flat[n1 + hidden:n1 + 2 * hidden], flat[n1 + 2 * hidden:]


def n_params(dim: int, hidden: int) -> int:
    return hidden * dim + 2 * hidden + 1


def init_params(dim: int, hidden: int, rng: np.random.Generator) -> np.ndarray:
    """PyTorch's default ``nn.Linear`` initialisation, because the exploration bonus scales with the
    gradients and so with the weights: the paper's constants (λ, ν) were tuned for this scale."""
    theta = np.empty(n_params(dim, hidden))
    w1, b1, w2, b2 = unpack(theta, dim, hidden)
    w1[:], b1[:] = rng.uniform(-1, 1, w1.shape) / np.sqrt(dim), rng.uniform(-1, 1, hidden) / np.sqrt(dim)
    w2[:], b2[:] = rng.uniform(-1, 1, hidden) / np.sqrt(hidden), rng.uniform(-1, 1, 1) / np.sqrt(hidden)
    return theta


def forward(theta: np.ndarray, x: np.ndarray, hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """Pre-activations (n, hidden) and outputs (n,)."""
    w1, b1, w2, b2 = unpack(theta, x.shape[1], hidden)
    pre = x @ w1.T + b1
    return pre, np.maximum(pre, 0.0) @ w2 + b2[0]


def gradients(theta: np.ndarray, x: np.ndarray, hidden: int) -> np.ndarray:
    """Per-example gradient of the output w.r.t. all parameters, (n, n_params), in ``unpack`` order."""
    _, _, w2, _ = unpack(theta, x.shape[1], hidden)
    pre, _ = forward(theta, x, hidden)
    gate = w2 * (pre > 0)
    d_w1 = (gate[:, :, None] * x[:, None, :]).reshape(len(x), -1)
    return np.hstack([d_w1, gate, np.maximum(pre, 0.0), np.ones((len(x), 1))])


def train(theta: np.ndarray, x: np.ndarray, y: np.ndarray, hidden: int, config: NeuralBanditConfig) -> np.ndarray:
    """Trained copy of ``theta``: full-batch Adam on the mean squared error with L2 weight decay λ/n (as
    torch's Adam applies ``weight_decay``). Full batch because a few hundred points make one cheap matrix
    product; float32 because it halves the time of those products and an SGD fit gains nothing from more."""
    theta, x, y = theta.astype(np.float32), x.astype(np.float32), y.astype(np.float32)
    n, dim = x.shape
    w1, b1, w2, b2 = unpack(theta, dim, hidden)
    grad = np.empty_like(theta)
    g_w1, g_b1, g_w2, g_b2 = unpack(grad, dim, hidden)
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
        step = config.lr / (1 - beta1**t)
        theta -= step * m / (np.sqrt(v / (1 - beta2**t)) + _ADAM_EPS)
    return theta.astype(np.float64)


def standardise(features: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per feature, fitted on the whole pool.

    Why: transformer hidden states carry a few "massive" dimensions orders of magnitude larger than the
    rest; unscaled, they dominate the ReLU pre-activations and the gradient features behind σ, and the
    paper's lr and initialisation assume unit-scale inputs. Why the pool rather than the observations:
    the pool is known before the first query, so the transform exists for the random start and stays
    fixed across refits, which keeps gradients (and so U, accumulated over the run) comparable.
    Constant features map to 0 rather than NaN.
    """
    mean, std = features.mean(axis=0), features.std(axis=0)
    scale = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    z = (features - mean) / scale
    return z / np.sqrt(max(1, int(np.count_nonzero(std > 1e-12 * np.maximum(1.0, np.abs(mean))))))


class NeuralBandit:
    """NeuralUCB / NeuralTS over a fixed candidate pool, picking batches one candidate at a time.

    ``U`` (the diagonal of the gradient-feature covariance, prior λ) accumulates the squared gradients of
    every candidate the bandit picks, at pick time as in the paper's code, and survives refits. Updating it
    after each pick of a batch lowers σ around pending picks, so one batch spreads out instead of asking
    for the same region k times while those queries run in parallel.
    """

    def __init__(self, features: np.ndarray, config: NeuralBanditConfig = NeuralBanditConfig()) -> None:
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or len(features) == 0 or not np.all(np.isfinite(features)):
            raise ValueError("features must be a finite, non-empty (n_candidates, dim) array")
        self.config = config
        self.x = standardise(features)
        init_seed, pick_seed = np.random.SeedSequence(config.seed).spawn(2)
        self._init_rng, self._rng = np.random.default_rng(init_seed), np.random.default_rng(pick_seed)
        self.theta = init_params(self.x.shape[1], config.hidden, self._init_rng)
        self.u = np.full(self.theta.size, config.lam)
        self.n_observations = 0
        self.y_mean, self.y_scale = 0.0, 1.0

    def fit(self, indices: Sequence[int], scores: Sequence[float]) -> None:
        """Re-initialise and train on all observations so far; a fresh start each time (as INSTINCT
        does) keeps the fit from depending on the order observations arrived in."""
        idx, y = np.asarray(indices, dtype=np.int64), np.asarray(scores, dtype=np.float64)
        if idx.ndim != 1 or len(idx) == 0 or idx.shape != y.shape:
            raise ValueError("fit needs one score per index and at least one observation")
        if idx.min() < 0 or idx.max() >= len(self.x) or not np.all(np.isfinite(y)):
            raise ValueError("indices must lie in the pool and scores must be finite")
        theta = init_params(self.x.shape[1], self.config.hidden, self._init_rng)
        self.y_mean, self.y_scale = float(y.mean()), float(y.std()) if y.std() > 0 else 1.0
        self.theta = train(theta, self.x[idx], (y - self.y_mean) / self.y_scale, self.config.hidden, self.config)
        self.n_observations = len(idx)

    def predict(self, indices: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Predicted score μ and its exploration width σ (before ν-free scaling: σ includes λ·ν)."""
        x = self.x if indices is None else self.x[np.asarray(indices, dtype=np.int64)]
        return forward(self.theta, x, self.config.hidden)[1] * self.y_scale + self.y_mean, self._sigma(x) * self.y_scale

    def select(self, k: int, exclude: Collection[int] = ()) -> list[int]:
        """Up to ``k`` distinct candidates not in ``exclude``; seeded random picks before the first fit."""
        available = np.setdiff1d(np.arange(len(self.x)), np.fromiter(exclude, dtype=np.int64, count=len(exclude)))
        k = min(k, len(available))
        if self.n_observations == 0:
            return [int(i) for i in self._rng.choice(available, size=k, replace=False)]
        mu = forward(self.theta, self.x, self.config.hidden)[1]
        allowed = np.zeros(len(self.x), dtype=bool)
        allowed[available] = True
        picks: list[int] = []
        for _ in range(k):
            score = np.where(allowed, self._acquisition(mu, self._sigma(self.x)), -np.inf)
            pick = int(np.argmax(score))
            self.u += gradients(self.theta, self.x[pick:pick + 1], self.config.hidden)[0] ** 2
            allowed[pick] = False
            picks.append(pick)
        return picks

    def _acquisition(self, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        if self.config.acquisition == "ts":
            return self._rng.normal(mu, sigma)
        return mu + sigma

    def _sigma(self, x: np.ndarray) -> np.ndarray:
        """sqrt(Σ λ·ν·g²/U) over all parameters, without materialising the (n, n_params) gradients: the
        first layer's squared gradient factorises as gate² ⊗ x², so its sum is one matrix product."""
        hidden = self.config.hidden
        _, _, w2, _ = unpack(self.theta, x.shape[1], hidden)
        u_w1, u_b1, u_w2, u_b2 = unpack(self.u, x.shape[1], hidden)
        pre, _ = forward(self.theta, x, hidden)
        gate2 = (w2 * (pre > 0)) ** 2
        total = np.einsum("nh,nh->n", gate2, (x * x) @ (1.0 / u_w1).T + 1.0 / u_b1)
        total += np.maximum(pre, 0.0) ** 2 @ (1.0 / u_w2) + 1.0 / u_b2[0]
        return np.sqrt(self.config.lam * self.config.nu * total)
