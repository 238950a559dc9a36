#!/usr/bin/env python3
"""Run one DSPy optimizer (MIPROv2, GEPA, or none) on one agentopt task, for the head-to-head benchmark.

Runs in its own virtualenv (tested with dspy==3.4.1, optuna==5.0.0) and does NOT import agentopt:

    /tmp/dspy-venv/bin/python experiments/dspy_runner.py SPEC.json OUT.json

SPEC.json::

    {"optimizer": "miprov2" | "gepa" | "seed",
     "base_url": "http://127.0.0.1:8080/v1", "model": "smollm2-135m-instruct",
     # or "base_urls": [...]: replicas of the model, each request to the one with the fewest in flight
     # (ties taken in turn)
     "task": {"name", "description", "instruction", "metric", "train": [{"input", "target"}], "val", "test"},
     # metric "first_named" also takes "vocabulary": [...] (experiments/fields_tasks.py's metric)
     "task_budget": 200, "task_max_tokens": 32, "proposer_max_tokens": 256, "proposer_temperature": 0.9,
     "seed": 0, "cache_dir": "/some/dir",
     # optional: "threads": 1, "request_timeout_s": 600, "mipro": {...overrides...}, "gepa": {...overrides...},
     #           "task_format": "dspy_chat" (default: DSPy's ChatAdapter prompt) | "plain" (agentopt's prompt
     #           shape for the task program: system=instruction, demos as chat turns, user=input; the proposer
     #           LM still uses DSPy's ChatAdapter)}

Call accounting. Both ``dspy.LM`` objects point at an in-process HTTP relay (``127.0.0.1:<free port>/task``
and ``/proposer``) that forwards every request to ``base_url`` and counts it, with the ``usage`` the server
reports. The counts are therefore requests that really went to the model server (a request that fails is
still counted, and listed under breakdown.http_errors), whatever DSPy does internally (LM copies with their own ``history``, adapter retries, ``n>1``, provider retries). The relay also
enforces the task budget: during optimization, task request number ``task_budget + 1`` and later ones are
answered locally with HTTP 400 and never reach the server; DSPy scores such an example as a failure
(MIPROv2/GEPA evaluators catch per-example errors), so the optimizer finishes with what it had. DSPy's
response cache is disabled (``cache=False`` per LM, memory and disk cache off, ``DSPY_CACHEDIR`` pointed at a
fresh directory under ``cache_dir``), so every program call is a real request; ``num_retries=0``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

_T0 = time.time()


def _write(path: str, out: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=2, default=str)
    os.replace(tmp, path)


def _empty_out(note: str = "") -> dict:
    return {"test_accuracy": 0.0, "n_test": 0, "test_errors": 0, "task_calls": 0, "test_calls": 0,
            "proposer_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "wall_s": 0.0,
            "final_instruction": "", "n_demos": 0, "parse_failures": 0, "notes": note, "dspy_version": ""}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    spec_path, out_path = argv[1], argv[2]
    try:
        with open(spec_path) as f:
            spec = json.load(f)
        _prepare_env(spec)
    except BaseException as exc:  # noqa: BLE001 - always leave an OUT.json behind
        out = _empty_out(f"FATAL before start: {type(exc).__name__}: {exc}")
        out["wall_s"] = round(time.time() - _T0, 2)
        _write(out_path, out)
        return 1
    runner = None
    try:
        runner = Runner(spec)
        out = runner.run()
        rc = 0
    except BaseException as exc:  # noqa: BLE001
        out = _empty_out(f"FATAL: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
        if runner is not None:
            try:
                out.update(runner.accounting())
            except Exception:  # noqa: BLE001
                pass
        rc = 1
    finally:
        if runner is not None:
            runner.close()
    out["wall_s"] = round(time.time() - _T0, 2)
    _write(out_path, out)
    return rc


def _prepare_env(spec: dict) -> None:
    """Settings DSPy reads at import time: a fresh, private cache dir and no network metadata fetch."""
    cache_root = spec.get("cache_dir") or "/tmp/dspy_runner_cache"
    run_dir = os.path.join(cache_root, f"dspy_{spec.get('optimizer', 'x')}_{os.getpid()}_{int(time.time())}")
    os.makedirs(run_dir, exist_ok=True)
    os.environ["DSPY_CACHEDIR"] = run_dir
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # else DSPy/LiteLLM try GitHub for model prices
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    spec["_run_dir"] = run_dir


# ----------------------------------------------------------------------------------------------------
# Scoring: a copy of agentopt's metrics (agentopt/optimizer/tasks/metrics.py) and answer clean-up
# (agentopt/agents/runtime/prompt_runtime.py: postprocess with DEFAULT_POSTPROCESS), so both systems are scored alike.
# ----------------------------------------------------------------------------------------------------
import re  # noqa: E402
import string  # noqa: E402
from collections import Counter  # noqa: E402

_PUNCT = re.escape(string.punctuation)
_EDGE_PUNCT = re.compile(rf"^[{_PUNCT}\s]+|[{_PUNCT}\s]+$")
_SPACES = re.compile(r"\s+")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_STRIP_PREFIXES = ["answer:", "output:", "the answer is"]
_STRIP_CHARS = "\"'`*. "


def postprocess(text: str) -> str:
    answer = (text or "").strip()
    answer = next((line.strip() for line in answer.splitlines() if line.strip()), "")
    for prefix in _STRIP_PREFIXES:
        answer = re.sub(rf"^\s*{re.escape(prefix)}\s*", "", answer, flags=re.IGNORECASE)
    return answer.strip(_STRIP_CHARS)


def normalise(text: str) -> str:
    return _SPACES.sub(" ", _EDGE_PUNCT.sub("", text.strip().lower()))


def exact_match(prediction: str, target: str) -> float:
    return float(normalise(prediction) == normalise(target))


def contains(prediction: str, target: str) -> float:
    needle = normalise(target)
    if not needle:
        return float(not normalise(prediction))
    return float(re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", normalise(prediction)) is not None)


def token_f1(prediction: str, target: str) -> float:
    pred, gold = normalise(prediction).split(), normalise(target).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def last_number(prediction: str, target: str) -> float:
    found = _NUMBER.findall(prediction)
    if not found:
        return 0.0
    try:
        return float(abs(float(found[-1].replace(",", "")) - float(target.replace(",", ""))) < 1e-6)
    except ValueError:
        return 0.0


def first_named(prediction: str, target: str, vocabulary: tuple[str, ...]) -> float:
    """experiments/fields_tasks.py's metric: the first vocabulary word the answer names is the target."""
    named = [w for w in prediction.lower().replace(".", " ").replace(",", " ").split() if w in vocabulary]
    return float(bool(named) and named[0] == target.lower())


METRICS = {"exact_match": exact_match, "contains": contains, "token_f1": token_f1, "last_number": last_number,
           "first_named": first_named}


# ----------------------------------------------------------------------------------------------------
# Counting relay
# ----------------------------------------------------------------------------------------------------
import http.client  # noqa: E402
import threading  # noqa: E402
import urllib.parse  # noqa: E402
from collections import defaultdict  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402


class Meter:
    """Requests and tokens per (role, phase); the hard task budget during the 'optimize' phase."""

    def __init__(self, task_budget: int, seed: int):
        self.lock = threading.Lock()
        self.phase = "optimize"
        self.task_budget = task_budget
        self.seed = seed
        self.sent: dict[tuple[str, str], int] = defaultdict(int)
        self.refused: dict[tuple[str, str], int] = defaultdict(int)
        self.http_errors: dict[tuple[str, str], int] = defaultdict(int)
        self.prompt_tokens: dict[tuple[str, str], int] = defaultdict(int)
        self.completion_tokens: dict[tuple[str, str], int] = defaultdict(int)
        self.error_samples: list[str] = []
        self.log_path = os.environ.get("DSPY_RUNNER_LOG")
        self.sub_cap: int | None = None  # a tighter absolute cap on optimize-phase task calls (MIPRO bootstrap)
        self.sub_cap_name = ""

    def admit(self, role: str) -> tuple[bool, str, int]:
        with self.lock:
            key = (role, self.phase)
            cap = self.task_budget if self.sub_cap is None else min(self.task_budget, self.sub_cap)
            if role == "task" and self.phase == "optimize" and self.sent[key] >= cap:
                self.refused[(role, self.phase if self.sub_cap is None else self.sub_cap_name)] += 1
                return False, self.phase, 0
            self.sent[key] += 1
            return True, self.phase, sum(v for (r, _), v in self.sent.items() if r == role)

    def task_calls_left(self) -> int:
        with self.lock:
            return self.task_budget - self.sent[("task", "optimize")]

    def record(self, role: str, phase: str, status: int, reply: bytes, request: bytes, dt: float) -> None:
        usage = {}
        if status == 200:
            try:
                usage = json.loads(reply).get("usage") or {}
            except ValueError:
                pass
        with self.lock:
            key = (role, phase)
            self.prompt_tokens[key] += int(usage.get("prompt_tokens") or 0)
            self.completion_tokens[key] += int(usage.get("completion_tokens") or 0)
            if status != 200:
                self.http_errors[key] += 1
                if len(self.error_samples) < 5:
                    self.error_samples.append(f"{role}/{phase} HTTP {status}: {reply[:300]!r}")
            if self.log_path:
                with open(self.log_path, "a") as f:
                    f.write(json.dumps({"role": role, "phase": phase, "status": status, "t": round(time.time() - _T0, 2),
                                        "dt": round(dt, 2),
                                        "request": request.decode("utf-8", "replace"),
                                        "reply": reply.decode("utf-8", "replace")}) + "\n")


class Relay:
    """``http://127.0.0.1:PORT/<role>/...`` -> ``base_url/...``; one counting point for every LM request,
    and a least-busy balancer when the model has several replicas."""

    def __init__(self, base_urls: list[str], meter: Meter, timeout_s: float):
        self.upstreams = [urllib.parse.urlsplit(url.rstrip("/")) for url in base_urls]
        self.in_flight = [0] * len(self.upstreams)
        self.turn = 0  # ties go round the replicas: two runs sending one request at a time must not both pick the first
        self.lock = threading.Lock()
        self.meter = meter
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # silence
                pass

            def do_GET(self):
                self._relay("GET")

            def do_POST(self):
                self._relay("POST")

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _relay(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                _, role, rest = (self.path.split("/", 2) + [""])[:3]
                counted = method == "POST" and "completions" in rest
                phase = relay.meter.phase
                if counted:
                    ok, phase, nth = relay.meter.admit(role)
                    if not ok:
                        self._reply(400, json.dumps({"error": {
                            "message": f"benchmark task budget of {relay.meter.task_budget} calls exhausted",
                            "type": "invalid_request_error", "code": "budget_exhausted"}}).encode())
                        return
                    body = _fix_body(body, relay.meter.seed * 1_000_003 + nth if role == "proposer" else None)
                with relay.lock:
                    n = len(relay.upstreams)
                    order = [(relay.turn + i) % n for i in range(n)]
                    pick = min(order, key=relay.in_flight.__getitem__)
                    relay.in_flight[pick] += 1
                    relay.turn += 1
                upstream = relay.upstreams[pick]
                path = upstream.path + "/" + rest
                headers = {"Content-Type": self.headers.get("Content-Type", "application/json"),
                           "Authorization": self.headers.get("Authorization", "Bearer not-needed")}
                t0 = time.time()
                try:
                    conn = http.client.HTTPConnection(upstream.hostname, upstream.port or 80, timeout=timeout_s)
                    conn.request(method, path, body=body if method == "POST" else None, headers=headers)
                    resp = conn.getresponse()
                    status, reply = resp.status, resp.read()
                    conn.close()
                except Exception as exc:  # noqa: BLE001
                    status = 502
                    reply = json.dumps({"error": {"message": f"relay: upstream failed: {exc}",
                                                  "type": "api_connection_error"}}).encode()
                finally:
                    with relay.lock:
                        relay.in_flight[pick] -= 1
                if counted:
                    relay.meter.record(role, phase, status, reply, body, time.time() - t0)
                self._reply(status, reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, role: str) -> str:
        return f"http://127.0.0.1:{self.port}/{role}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _fix_body(body: bytes, seed: int | None) -> bytes:
    """DSPy 3.4's native (lm15) OpenAI route sends ``max_completion_tokens``, which llama-cpp-python's server
    ignores (replies then run to the context limit): send it as ``max_tokens``. Sampled proposer requests get
    a per-request ``seed`` (llama.cpp honours it) so runs are reproducible."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if not isinstance(payload, dict):
        return body
    if "max_completion_tokens" in payload:
        limit = payload.pop("max_completion_tokens")
        if payload.get("max_tokens") is None:
            payload["max_tokens"] = limit
    if seed is not None and payload.get("seed") is None:
        payload["seed"] = seed % (2**31 - 1)
    return json.dumps(payload).encode()


# ----------------------------------------------------------------------------------------------------
# The runner
# ----------------------------------------------------------------------------------------------------


class Runner:
    def __init__(self, spec: dict):
        self.spec = spec
        self.optimizer = str(spec.get("optimizer", "seed")).lower()
        if self.optimizer not in ("miprov2", "gepa", "seed"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}")
        task = spec["task"]
        self.task = task
        self.metric_name = task.get("metric", "exact_match")
        if self.metric_name not in METRICS:
            raise ValueError(f"metric {self.metric_name!r} not implemented here; known: {sorted(METRICS)}")
        self.metric_fn = METRICS[self.metric_name]
        if self.metric_name == "first_named":
            vocabulary = tuple(task.get("vocabulary") or ())
            if not vocabulary:
                raise ValueError("metric 'first_named' needs the task's 'vocabulary'")
            self.metric_fn = lambda prediction, target: first_named(prediction, target, vocabulary)
        self.budget = int(spec.get("task_budget", 200))
        self.seed = int(spec.get("seed", 0))
        self.threads = int(spec.get("threads", 1))
        self.notes: list[str] = []
        self.meter = Meter(self.budget, self.seed)
        self.relay = Relay(spec.get("base_urls") or [spec["base_url"]], self.meter, float(spec.get("request_timeout_s", 600)))
        self.parse_lock = threading.Lock()
        self.parse_failures: dict[str, int] = defaultdict(int)  # 'task' / 'proposer' / 'task_empty' ...
        self.plan: dict = {}

    # -- accounting ------------------------------------------------------------------------------
    def accounting(self) -> dict:
        m = self.meter
        with m.lock:
            sent = dict(m.sent)
            out = {
                "task_calls": sent.get(("task", "optimize"), 0),
                "test_calls": sent.get(("task", "test"), 0),
                "proposer_calls": sum(v for (r, _), v in sent.items() if r == "proposer"),
                "prompt_tokens": sum(m.prompt_tokens.values()),
                "completion_tokens": sum(m.completion_tokens.values()),
                "parse_failures": self.parse_failures.get("task", 0),
                "breakdown": {
                    "requests": {f"{r}/{p}": v for (r, p), v in sorted(sent.items())},
                    "refused_over_budget": {f"{r}/{p}": v for (r, p), v in sorted(m.refused.items())},
                    "http_errors": {f"{r}/{p}": v for (r, p), v in sorted(m.http_errors.items())},
                    "prompt_tokens": {f"{r}/{p}": v for (r, p), v in sorted(m.prompt_tokens.items())},
                    "completion_tokens": {f"{r}/{p}": v for (r, p), v in sorted(m.completion_tokens.items())},
                    "parse_failures": dict(self.parse_failures),
                    "error_samples": list(m.error_samples),
                },
            }
        if self.plan:
            out["config"] = self.plan
        return out

    def close(self) -> None:
        try:
            self.relay.close()
        except Exception:  # noqa: BLE001
            pass

    # -- DSPy setup --------------------------------------------------------------------------------
    def _setup_dspy(self):
        import random

        import dspy

        self.dspy = dspy
        random.seed(self.seed)
        try:
            import numpy as np

            np.random.seed(self.seed)
        except ImportError:
            pass
        import logging

        logging.getLogger("dspy.clients.lm").setLevel(logging.ERROR)  # "response was truncated" on every call
        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False,
                             disk_cache_dir=self.spec["_run_dir"])
        model = f"openai/{self.spec['model']}"
        common = dict(api_key="not-needed", cache=False, num_retries=0,
                      timeout=float(self.spec.get("request_timeout_s", 600)))
        self.task_lm = dspy.LM(model, api_base=self.relay.url("task"), temperature=0.0,
                               max_tokens=int(self.spec.get("task_max_tokens", 32)), **common)
        self.proposer_lm = dspy.LM(model, api_base=self.relay.url("proposer"),
                                   temperature=float(self.spec.get("proposer_temperature", 0.9)),
                                   max_tokens=int(self.spec.get("proposer_max_tokens", 256)), **common)
        self.adapter = make_lenient_adapter(dspy, self)
        dspy.configure(lm=self.task_lm, adapter=self.adapter, num_threads=self.threads, max_errors=10**6)

        def ex(row):
            return dspy.Example(input=str(row["input"]), answer=str(row["target"])).with_inputs("input")

        self.train = [ex(r) for r in self.task.get("train", [])]
        self.val = [ex(r) for r in self.task.get("val", [])]
        self.test = [ex(r) for r in self.task.get("test", [])]
        sig = dspy.Signature({"input": (str, dspy.InputField()), "answer": (str, dspy.OutputField())},
                             self.task["instruction"])
        self.seed_program = dspy.Predict(sig)

    # -- metrics ---------------------------------------------------------------------------------
    def _score(self, pred) -> tuple[str, str]:
        raw = getattr(pred, "answer", None) if pred is not None else None
        raw = "" if raw is None else str(raw)
        cleaned = postprocess(raw)
        return cleaned, raw

    def metric(self, example, pred, trace=None, *_):
        cleaned, _ = self._score(pred)
        score = self.metric_fn(cleaned, example.answer)
        if trace is not None:  # bootstrapping: a demo must be fully right (DSPy convention)
            return score >= 1.0
        return score

    def feedback_metric(self, gold, pred, trace=None, pred_name=None, pred_trace=None):
        cleaned, raw = self._score(pred)
        score = self.metric_fn(cleaned, gold.answer)
        if score >= 1.0:
            fb = f"Correct: expected {gold.answer!r}, got {cleaned!r}."
        else:
            fb = f"Wrong ({self.metric_name} score {score:.2f}): expected {gold.answer!r}, got {cleaned!r}."
            if raw.strip() != cleaned:
                fb += f" Raw output: {raw.strip()[:200]!r}."
        return self.dspy.Prediction(score=score, feedback=fb)

    # -- main ------------------------------------------------------------------------------------
    def run(self) -> dict:
        self._setup_dspy()
        dspy = self.dspy
        program, how = self.seed_program, "seed program"
        if self.optimizer == "miprov2":
            program, how = self._guarded(self._run_mipro)
        elif self.optimizer == "gepa":
            program, how = self._guarded(self._run_gepa)
        self.notes.append(f"evaluated on test: {how}")
        t_opt = time.time() - _T0

        self.meter.phase = "test"
        acc, n, errors, scores = self._evaluate_test(program)
        pred = program.predictors()[0]
        out = {
            "test_accuracy": acc, "n_test": n, "test_errors": errors, "test_scores": scores,
            "final_instruction": pred.signature.instructions, "n_demos": len(pred.demos or []),
            "dspy_version": dspy.__version__,
            "final_demos": [{"input": d.get("input"), "answer": d.get("answer")} for d in (pred.demos or [])],
            "optimize_wall_s": round(t_opt, 2),
        }
        out.update(self.accounting())
        out["notes"] = self._notes()
        return out

    def _guarded(self, fn):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - report, fall back
            self.notes.append(f"OPTIMIZATION FAILED ({type(exc).__name__}: {str(exc)[:300]}); "
                              f"traceback tail: {traceback.format_exc(limit=3)[-600:]}")
            best = getattr(self, "_best_so_far", None)
            if best is not None:
                return best, "best program recorded before the failure"
            return self.seed_program, "seed program (fallback after optimizer failure)"

    def _evaluate_test(self, program) -> tuple[float, int, int, list[float]]:
        """Accuracy, examples, errors, and each test example's score in the spec's order (paired
        comparisons need them per example)."""
        from concurrent.futures import ThreadPoolExecutor

        dspy = self.dspy

        def one(example):
            try:
                with dspy.context(lm=self.task_lm, adapter=self.adapter):
                    pred = program(**example.inputs())
            except Exception:  # noqa: BLE001 - an error scores 0
                return 0.0, True
            return float(self.metric(example, pred)), False

        if self.threads > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                results = list(pool.map(one, self.test))
        else:
            results = [one(e) for e in self.test]
        n = len(results)
        return (sum(s for s, _ in results) / n if n else 0.0), n, sum(e for _, e in results), [s for s, _ in results]

    def _valset(self, size: int):
        import random

        if size >= len(self.val):
            return list(self.val)
        rows = list(self.val)
        random.Random(self.seed).shuffle(rows)
        return rows[:size]

    # -- MIPROv2 ---------------------------------------------------------------------------------
    def plan_mipro(self) -> dict:
        """Choose MIPROv2 settings whose expected task calls ~= budget.

        MIPROv2 (auto=None, minibatch=True) spends task calls on:
          bootstrap:  one BootstrapFewShot per demo set beyond the first two (sets = num_candidates, of which
                      'zero-shot' and 'labeled-only' cost nothing); each runs the program on shuffled train
                      examples until max_bootstrapped_demos of them pass: up to len(train) calls per set with a
                      model that is never right. Planned at 5 calls/set (the assumption dspy.GEPA.auto_budget
                      makes) and capped there by the relay (bootstrap_cap), the rest is refused = failed attempt;
          trials:     V (default program, full valset) + N * minibatch_size + V * ceil(N / full_eval_steps).
        Instruction proposal uses only the proposer LM.
        """
        o = dict(self.spec.get("mipro") or {})
        B, T = self.budget, len(self.train)
        V_all = len(self.val)
        n = int(o.get("num_candidates", max(3, min(10, B // 30))))
        mbd = int(o.get("max_bootstrapped_demos", 1))
        mld = int(o.get("max_labeled_demos", 2))
        if mbd == 0 and n > 3:
            n = 3  # dspy: rng.randint(1, max_bootstrapped_demos) fails for shuffled sets when it is 0
        boot_sets = max(0, n - 2) if mbd > 0 else 0
        boot_cap = int(o.get("bootstrap_cap", boot_sets * min(T, 5 * max(1, mbd))))
        V = int(o.get("val_size", min(V_all, max(5, B // 5))))
        V = max(1, min(V, V_all))
        steps = int(o.get("minibatch_full_eval_steps", 5))
        m = int(o.get("minibatch_size", max(3, min(35, round(V / 2.5)))))
        minibatch = bool(o.get("minibatch", m < V))
        m = min(m, V)
        avail = B - boot_cap

        def cost(N):
            if minibatch:
                return V + N * m + V * -(-N // steps)
            return V * (1 + N)

        if "num_trials" in o:
            N = int(o["num_trials"])
        else:
            N = 1
            while cost(N + 1) <= avail:
                N += 1
        return {"num_candidates": n, "num_trials": N, "max_bootstrapped_demos": mbd, "max_labeled_demos": mld,
                "val_size": V, "minibatch": minibatch, "minibatch_size": m, "minibatch_full_eval_steps": steps,
                "expected_task_calls": boot_cap + cost(N), "bootstrap_cap": boot_cap,
                "init_temperature": float(self.spec.get("proposer_temperature", 0.9)),
                "view_data_batch_size": int(o.get("view_data_batch_size", 10)),
                "program_aware_proposer": bool(o.get("program_aware_proposer", True)),
                "data_aware_proposer": bool(o.get("data_aware_proposer", True))}

    def _run_mipro(self):
        dspy = self.dspy
        from dspy.teleprompt import MIPROv2

        plan = self.plan_mipro()
        self.plan = plan
        runner = self
        self.notes.append("MIPROv2: proposer temperature = init_temperature, except DSPy's dataset-summary calls "
                          "(hard-coded 1.0); instruction candidate 0 is always the seed instruction")

        class Mipro(MIPROv2):
            """MIPROv2 that remembers its best full-evaluated program (for recovery) and does not crash when
            every sampled combination has already had its full evaluation (small search spaces)."""

            def _perform_full_evaluation(self, trial_num, adjusted_num_trials, param_score_dict,
                                         fully_evaled_param_combos, evaluate, valset, trial_logs,
                                         total_eval_calls, score_data, best_score, best_program, *rest):
                runner._best_so_far = best_program
                try:
                    result = super()._perform_full_evaluation(
                        trial_num, adjusted_num_trials, param_score_dict, fully_evaled_param_combos, evaluate,
                        valset, trial_logs, total_eval_calls, score_data, best_score, best_program, *rest)
                except ValueError as exc:
                    if "No valid program found" not in str(exc):
                        raise
                    runner.notes.append(f"MIPROv2 full eval at trial {trial_num} skipped: all sampled "
                                        "combinations already fully evaluated")
                    return best_score, best_program, total_eval_calls
                runner._best_so_far = result[1]
                return result

            def _bootstrap_fewshot_examples(self, *a, **k):
                # Bootstrapping runs the program on train examples until max_bootstrapped_demos pass; with a
                # model that is almost never right it would try every train example for every demo set and
                # eat the whole budget. Cap it at the planned share; refused attempts count as failed ones.
                before = runner.meter.sent[("task", "optimize")]
                runner.meter.sub_cap, runner.meter.sub_cap_name = before + plan["bootstrap_cap"], "bootstrap_cap"
                try:
                    out = super()._bootstrap_fewshot_examples(*a, **k)
                finally:
                    runner.meter.sub_cap = None
                runner.plan["actual_bootstrap_calls"] = runner.meter.sent[("task", "optimize")] - before
                runner.plan["bootstrapped_demo_sets"] = [len(d) for d in (out or {}).get(0, [])]
                return out

            def _propose_instructions(self, *a, **k):
                before = runner.meter.sent[("proposer", "optimize")]
                out = super()._propose_instructions(*a, **k)
                runner.plan["instruction_candidates"] = [str(x)[:300] for x in out.get(0, [])]
                runner.plan["actual_proposal_calls"] = runner.meter.sent[("proposer", "optimize")] - before
                return out

        tp = Mipro(metric=self.metric, prompt_model=self.proposer_lm, task_model=self.task_lm,
                   max_bootstrapped_demos=plan["max_bootstrapped_demos"],
                   max_labeled_demos=plan["max_labeled_demos"], auto=None, num_candidates=plan["num_candidates"],
                   num_threads=self.threads, max_errors=10**6, seed=self.seed,
                   init_temperature=plan["init_temperature"], verbose=False, track_stats=True)
        self._best_so_far = None
        compiled = tp.compile(self.seed_program.deepcopy(), trainset=self.train, valset=self._valset(plan["val_size"]) or None,
                              num_trials=plan["num_trials"], minibatch=plan["minibatch"],
                              minibatch_size=plan["minibatch_size"],
                              minibatch_full_eval_steps=plan["minibatch_full_eval_steps"], seed=self.seed,
                              view_data_batch_size=plan["view_data_batch_size"],
                              program_aware_proposer=plan["program_aware_proposer"],
                              data_aware_proposer=plan["data_aware_proposer"])
        plan["best_val_score"] = getattr(compiled, "score", None)
        cands = getattr(compiled, "candidate_programs", None) or []
        plan["full_eval_scores"] = [round(float(c["score"]), 4) for c in cands]
        return compiled, "MIPROv2 best program"

    # -- GEPA ------------------------------------------------------------------------------------
    def plan_gepa(self) -> dict:
        """GEPA's max_metric_calls counts program runs (= task calls for one Predict, JSON fallback off):
        V for the seed on the valset, then per iteration 2 x reflection_minibatch_size (+ V when the new
        candidate wins the minibatch, + merge subsamples). GEPA checks the budget only between iterations, so
        the last one may overrun; the relay's hard cap refuses those calls (they score as failures)."""
        o = dict(self.spec.get("gepa") or {})
        V = int(o.get("val_size", min(len(self.val), max(5, self.budget // 5))))
        V = max(1, min(V, len(self.val)))
        return {"max_metric_calls": int(o.get("max_metric_calls", self.budget)), "val_size": V,
                "reflection_minibatch_size": int(o.get("reflection_minibatch_size", 3)),
                "use_merge": bool(o.get("use_merge", True)),
                "max_merge_invocations": int(o.get("max_merge_invocations", 5)),
                "candidate_selection_strategy": o.get("candidate_selection_strategy", "pareto"),
                "proposer_adapter": "lenient ChatAdapter (GEPA default is JSONAdapter)"}

    def _run_gepa(self):
        dspy = self.dspy
        from dspy.teleprompt.gepa.instruction_proposal import InstructionProposer

        plan = self.plan_gepa()
        self.plan = plan
        runner = self

        def out_of_budget(_state) -> bool:
            # GEPA stop callback on the real task requests left: an iteration needs 2 x minibatch calls (parent
            # with traces, then the new candidate); with fewer left the candidate's minibatch would be refused,
            # so its proposer call would be wasted.
            return runner.meter.task_calls_left() < 2 * plan["reflection_minibatch_size"]

        proposer = InstructionProposer(adapter=make_lenient_adapter(dspy, self, role="proposer"))
        tp = dspy.GEPA(metric=self.feedback_metric, max_metric_calls=plan["max_metric_calls"],
                       reflection_lm=self.proposer_lm, reflection_minibatch_size=plan["reflection_minibatch_size"],
                       candidate_selection_strategy=plan["candidate_selection_strategy"],
                       instruction_proposer=proposer, use_merge=plan["use_merge"],
                       max_merge_invocations=plan["max_merge_invocations"], num_threads=self.threads,
                       failure_score=0.0, perfect_score=1.0, track_stats=True, seed=self.seed,
                       log_dir=os.path.join(self.spec["_run_dir"], "gepa"),
                       gepa_kwargs={"stop_callbacks": [out_of_budget]})
        compiled = tp.compile(self.seed_program.deepcopy(), trainset=self.train, valset=self._valset(plan["val_size"]) or None)
        res = getattr(compiled, "detailed_results", None)
        if res is not None:
            try:
                plan["n_candidates"] = len(res.candidates)
                plan["val_scores"] = [round(float(s), 4) for s in res.val_aggregate_scores]
                plan["best_idx"] = int(res.best_idx)
                plan["gepa_metric_calls"] = getattr(res, "total_metric_calls", None)
            except Exception:  # noqa: BLE001
                pass
        return compiled, "GEPA best candidate"

    def _notes(self) -> str:
        acc = self.accounting()["breakdown"]
        base = [
            f"optimizer={self.optimizer}; task={self.task.get('name')}; metric={self.metric_name}; "
            f"budget={self.budget}; seed={self.seed}; threads={self.threads}; "
            f"task_format={self.spec.get('task_format', 'dspy_chat')}",
            "counts = HTTP requests forwarded to the model server by an in-process counting relay (ones that "
            "failed are still counted, see breakdown.http_errors); "
            "DSPy cache disabled (cache=False, memory+disk cache off, fresh DSPY_CACHEDIR); num_retries=0; "
            "over-budget task requests refused locally (400) and scored as failures",
            "adapter: ChatAdapter subclass, use_json_adapter_fallback=False (no hidden JSONAdapter retry); "
            "when the [[ ## field ## ]] markers are missing, the whole completion (markers stripped) becomes the "
            "field value; parse_failures counts this for the task program, optimization + test (split and proposer fallbacks in breakdown.parse_failures); "
            "answers scored after agentopt's postprocess (first line, prefixes, quote/punct strip)",
            "relay rewrites max_completion_tokens (what DSPy 3.4 sends) to max_tokens (what llama-cpp-python "
            "honours) and injects a per-request seed into proposer requests (reproducible sampling)",
        ]
        if acc["refused_over_budget"]:
            base.append(f"refused over budget: {acc['refused_over_budget']}")
        if acc["http_errors"]:
            base.append(f"http errors: {acc['http_errors']}")
        return " | ".join(base + self.notes)


def make_lenient_adapter(dspy, runner: Runner, role: str | None = None):
    """ChatAdapter that never fails to parse and never falls back to JSONAdapter (which would cost a second
    LM call per failure). Missing markers -> the whole completion is the (first) missing output field."""
    from dspy.adapters.chat_adapter import ChatAdapter, field_header_pattern
    from dspy.utils.exceptions import AdapterParseError

    marker = re.compile(r"\[\[\s*##\s*\w+\s*##\s*\]\]")

    plain = role is None and runner.spec.get("task_format", "dspy_chat") == "plain"

    class LenientChatAdapter(ChatAdapter):
        def __init__(self):
            super().__init__(use_json_adapter_fallback=False)

        def format(self, signature, demos, inputs):
            if not (plain and self._who(signature) == "task"):
                return super().format(signature, demos, inputs)
            # agentopt's prompt shape: instruction as system message, demos as user/assistant turns, raw input
            messages = [{"role": "system", "content": signature.instructions}]
            for demo in demos or []:
                if demo.get("input") is not None and demo.get("answer") is not None:
                    messages += [{"role": "user", "content": str(demo["input"])},
                                 {"role": "assistant", "content": str(demo["answer"])}]
            messages.append({"role": "user", "content": str(inputs["input"])})
            return messages

        def _who(self, signature) -> str:
            if role:
                return role
            is_task = set(signature.input_fields) == {"input"} and set(signature.output_fields) == {"answer"}
            return "task" if is_task else "proposer"

        def _call_postprocess(self, processed_signature, original_signature, outputs, lm, lm_kwargs):
            # An empty completion is an AdapterParseError before parse() is reached: make it parseable.
            fixed = []
            for o in outputs:
                if isinstance(o, str) and not o.strip():
                    o = " "
                elif isinstance(o, dict) and not (o.get("text") or "").strip() and not o.get("tool_calls"):
                    o = {**o, "text": " "}
                fixed.append(o)
            return super()._call_postprocess(processed_signature, original_signature, fixed, lm, lm_kwargs)

        def parse(self, signature, completion):
            if plain and self._who(signature) == "task":
                return {"answer": completion.strip()}
            try:
                return super().parse(signature, completion)
            except AdapterParseError:
                pass
            who = self._who(signature)
            with runner.parse_lock:
                runner.parse_failures[who] += 1
                runner.parse_failures[f"{who}/{runner.meter.phase}"] += 1
            # keep fields that did parse, fill the missing str ones with the marker-free completion
            fields = {}
            try:
                sections = [(None, [])]
                for line in completion.splitlines():
                    match = field_header_pattern.match(line.strip())
                    if match:
                        sections.append((match.group(1), [line[match.end():].strip()]))
                    else:
                        sections[-1][1].append(line)
                for k, v in sections:
                    if k in signature.output_fields and k not in fields:
                        fields[k] = "\n".join(v).strip()
            except Exception:  # noqa: BLE001
                fields = {}
            text = marker.sub("", completion).strip()
            for name, field in signature.output_fields.items():
                if name not in fields:
                    fields[name] = text if field.annotation in (str, None) else _coerce(field.annotation, text)
            return fields

    return LenientChatAdapter()


def _coerce(annotation, text):
    try:
        from dspy.adapters.utils import parse_value

        return parse_value(text, annotation)
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":
    sys.exit(main(sys.argv))
