"""The search side of ``rustybt optimize``: the parameter space of an algorithm class, constraints,
and the order in which parameter sets are tried (grid by hand; random, TPE and NSGA-II from optuna).

The Rust host owns the workers, the study store and the order of ``ask``/``tell`` calls; this module
only proposes parameters and learns from results, so a search is a pure function of that call order
and the seed (which is what makes studies reproducible and resumable).
"""

from __future__ import annotations

import ast
import itertools
import json
import math
from decimal import Decimal
from typing import Any, Callable, Iterator

from ._parameters import Param, ParameterError, parse_space
from .algorithm import parameter_space_of

__all__ = ["METHODS", "Search", "param_text", "param_json"]

METHODS = ("grid", "random", "tpe", "nsga2")

# How many proposals in a row may break a constraint (or repeat a tried set) before the search
# counts the space as used up: a constraint nothing satisfies must end the study, not hang it.
_MAX_REJECTED = 2000

_SAFE_FUNCTIONS = {"abs": abs, "min": min, "max": max, "round": round}


def param_text(value: Any) -> str:
    """A value as ``--param`` text that converts back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def param_json(value: Any) -> Any:
    """A value for the study store's JSON: numbers stay numbers, a Decimal keeps its digits."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return repr(value)


class _Constraint:
    def __init__(self, text: str, names: list[str]) -> None:
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as err:
            raise ParameterError(f"constraint `{text}` is not an expression: {err.msg}",
                                 "for example --constraint \"fast < slow\"") from None
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id not in names and node.id not in _SAFE_FUNCTIONS:
                raise ParameterError(f"constraint `{text}` names `{node.id}`, which is not a parameter",
                                     f"parameters: {', '.join(names)}")
            if isinstance(node, (ast.Attribute, ast.Lambda, ast.Call)) and not (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in _SAFE_FUNCTIONS
            ):
                raise ParameterError(f"constraint `{text}` may only compare parameters "
                                     "(arithmetic, comparisons, and, or, not, abs, min, max, round)")
        self.text = text
        self.code = compile(tree, "<constraint>", "eval")

    def holds(self, values: dict[str, Any]) -> bool:
        return bool(eval(self.code, {"__builtins__": {}, **_SAFE_FUNCTIONS}, dict(values)))


class Search:
    """Proposes parameter sets for ``cls``: ``ask()`` the next one, ``tell()`` how it did."""

    def __init__(self, cls: type, overrides: list[tuple[str, str]], method: str, seed: int,
                 directions: list[str], constraints: list[str], max_trials: int | None) -> None:
        if method not in METHODS:
            raise ParameterError(f"unknown search method `{method}`",
                                 f"methods: {', '.join(METHODS)}")
        space = parameter_space_of(cls)
        for name, text in overrides:
            if name not in space:
                raise ParameterError(f"unknown parameter `{name}` for `{cls.__name__}`",
                                     f"parameters of `{cls.__name__}`: {', '.join(space)}" if space
                                     else f"`{cls.__name__}` declares no parameters")
            space[name] = parse_space(space[name], text)
        self.space = space
        self.free = {n: p for n, p in space.items() if p.kind != "fixed"}
        if not self.free:
            raise ParameterError(
                f"`{cls.__name__}` has no parameter with a range to search",
                "declare one (`fast = Param(10, low=5, high=50, step=5)`) or give a space on the "
                "command line (`--param fast=5:50:5`, `--param kind=a,b,c`)")
        self.constraints = [_Constraint(c, list(space)) for c in constraints]
        self.method = method
        self.seed = seed
        self.directions = directions
        self.max_trials = max_trials
        self._asked = 0
        self._seen: set[str] = set()
        self._grid: Iterator[tuple[Any, ...]] | None = None
        self._pending: dict[int, Any] = {}
        if method == "grid":
            for param in self.free.values():
                param.values()  # raises with a hint when a range has no step
            self._grid = itertools.product(*(p.values() for p in self.free.values()))
        else:
            self._study = self._optuna_study()

    # -- what the host asks -------------------------------------------------------------------

    def describe(self) -> str:
        """The space as JSON (the study store's ``space``): resume compares it."""
        return json.dumps({name: {
            "kind": p.kind, "default": param_json(p.default), "low": param_json(p.low),
            "high": param_json(p.high), "step": param_json(p.step), "log": p.log,
            "choices": None if p.choices is None else [param_json(c) for c in p.choices],
        } for name, p in self.space.items()}, sort_keys=True)

    def size(self) -> int | None:
        """How many trials the search will propose at most (grid: after constraints)."""
        if self.method == "grid":
            count = sum(1 for combo in itertools.product(*(p.values() for p in self.free.values()))
                        if self._feasible(self._complete(combo)))
            return count if self.max_trials is None else min(count, self.max_trials)
        if all(p.choices is not None or p.step is not None or p.kind == "int" for p in self.free.values()):
            count = math.prod(self._count(p) for p in self.free.values())
            return count if self.max_trials is None else min(count, self.max_trials)
        return self.max_trials

    def ask(self, number: int) -> tuple[list[tuple[str, str]], str] | None:
        """The parameters of trial ``number`` (as ``--param`` texts, and as store JSON), or
        ``None`` when the search is done."""
        if self.max_trials is not None and self._asked >= self.max_trials:
            return None
        values = self._ask_grid() if self._grid is not None else self._ask_optuna(number)
        if values is None:
            return None
        self._asked += 1
        texts = [(name, param_text(value)) for name, value in values.items()]
        return texts, json.dumps({name: param_json(v) for name, v in values.items()})

    def tell(self, number: int, state: str, values: list[float] | None) -> None:
        """The result of trial ``number``: ``complete`` with one value per objective, or any
        other state (failed, too few trades, no value), which the sampler does not learn from."""
        trial = self._pending.pop(number, None)
        if trial is None:
            return
        import optuna
        if state == "complete" and values is not None:
            self._study.tell(trial, values if len(values) > 1 else values[0])
        elif state == "failed":
            self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self._study.tell(trial, state=optuna.trial.TrialState.PRUNED)

    # -- internals ----------------------------------------------------------------------------

    def _complete(self, combo: tuple[Any, ...]) -> dict[str, Any]:
        chosen = dict(zip(self.free, combo))
        return {name: chosen.get(name, p.default) for name, p in self.space.items()}

    def _feasible(self, values: dict[str, Any]) -> bool:
        return all(c.holds(values) for c in self.constraints)

    def _ask_grid(self) -> dict[str, Any] | None:
        assert self._grid is not None
        for combo in self._grid:
            values = self._complete(combo)
            if self._feasible(values):
                return values
        return None

    @staticmethod
    def _count(p: Param[Any]) -> int:
        if p.choices is not None:
            return len(p.choices)
        if p.step is not None:
            return len(p.values())
        return int(p.high) - int(p.low) + 1  # type: ignore[arg-type]

    def _optuna_study(self) -> Any:
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        samplers: dict[str, Callable[[], Any]] = {
            "random": lambda: optuna.samplers.RandomSampler(seed=self.seed),
            "tpe": lambda: optuna.samplers.TPESampler(seed=self.seed, multivariate=True),
            "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=self.seed),
        }
        self._distributions = {name: self._distribution(p) for name, p in self.free.items()}
        return optuna.create_study(
            sampler=samplers[self.method](),
            directions=["maximize" if d == "maximize" else "minimize" for d in self.directions],
        )

    @staticmethod
    def _distribution(p: Param[Any]) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
        # Stepped and categorical spaces are searched by index, so every proposed value is one
        # of the exact values a grid would use (0.1 steps stay 0.1, Decimals stay Decimals).
        if p.choices is not None:
            return CategoricalDistribution(list(range(len(p.choices))))
        if p.step is not None:
            return IntDistribution(0, len(p.values()) - 1)
        if p.kind == "int":
            low: Any = p.low
            high: Any = p.high
            return IntDistribution(int(low), int(high), log=p.log)
        return FloatDistribution(float(p.low), float(p.high), log=p.log)  # type: ignore[arg-type]

    def _value(self, p: Param[Any], raw: Any) -> Any:
        if p.choices is not None:
            return p.choices[raw]
        if p.step is not None:
            return p.values()[raw]
        if p.kind == "decimal":
            return Decimal(repr(raw))
        return raw

    def _ask_optuna(self, number: int) -> dict[str, Any] | None:
        import optuna
        for _ in range(_MAX_REJECTED):
            trial = self._study.ask(self._distributions)
            chosen = {name: self._value(p, trial.params[name]) for name, p in self.free.items()}
            values = {name: chosen.get(name, p.default) for name, p in self.space.items()}
            key = json.dumps({n: param_json(v) for n, v in values.items()}, sort_keys=True)
            if not self._feasible(values) or key in self._seen:
                # Never run: a constraint rules it out, or it was tried (no duplicate trials).
                self._study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            self._seen.add(key)
            self._pending[number] = trial
            return values
        return None
