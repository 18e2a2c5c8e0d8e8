"""The static steps of ``rustybt validate``: syntax, structure (imports, classes, signatures,
parameters, custom indicators) and the code metrics read from the source (``ast``)."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import math
import os
import re
import sys
import traceback
import types
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .. import _hooks
from .common import Problem, Step, user_location

if TYPE_CHECKING:
    from rustybt_api import Indicator

# Import name -> the distribution `pip install` needs, where the two differ.
PIP_NAMES = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "cv2": "opencv-python",
    "PIL": "Pillow",
    "yaml": "PyYAML",
    "bs4": "beautifulsoup4",
    "talib": "TA-Lib",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
    "Crypto": "pycryptodome",
    "jwt": "PyJWT",
    "serial": "pyserial",
    "zmq": "pyzmq",
    "OpenSSL": "pyOpenSSL",
    "attr": "attrs",
    "google": "protobuf",
    "psycopg2": "psycopg2-binary",
    "MySQLdb": "mysqlclient",
    "websocket": "websocket-client",
    "telegram": "python-telegram-bot",
    "binance": "python-binance",
    "pandas_ta": "pandas-ta",
    "statsmodels": "statsmodels",
    "lightgbm": "lightgbm",
    "xgboost": "xgboost",
    "torch": "torch",
    "tensorflow": "tensorflow",
}

# Engine hooks and the one argument each receives besides self.
HOOKS = _hooks.HOOKS
PARAMETER_TYPES = (bool, int, float, Decimal, str, type(None))
TIMEFRAME = re.compile(r"^\d+(ms|s|m|min|h|d|w)$")
MONEYISH = re.compile(r"(quantity|qty|size|amount|cash|price)", re.I)


def pip_hint(module: str) -> str:
    top = module.split(".")[0]
    return (f"pip install {PIP_NAMES.get(top, top)} (into the interpreter `rustybt doctor` shows), "
            "or put the module beside the algorithm")


def read_source(path: str) -> str:
    with open(path, "rb") as f:
        raw = f.read()
    return raw.decode("utf-8")


def check_syntax(path: str, source: str | None, read_error: str | None) -> tuple[Step, ast.Module | None]:
    step = Step("syntax", summary="does not compile")
    if read_error is not None:
        step.fail(Problem("unreadable", read_error, file=path))
        return step, None
    assert source is not None
    try:
        # compile, not just ast.parse: it also finds errors of the symbol table
        # (`return` outside a function, nonlocal at module level...). Nothing runs.
        compile(source, path, "exec", dont_inherit=True)
        tree = ast.parse(source, path)
    except SyntaxError as err:
        text = (err.text or "").rstrip("\n")
        step.fail(Problem(
            "syntax_error",
            f"{type(err).__name__}: {err.msg}",
            file=err.filename or path,
            line=err.lineno,
            column=err.offset,
            source=text.strip() or None,
        ))
        return step, None
    except ValueError as err:  # null bytes
        step.fail(Problem("syntax_error", str(err), file=path))
        return step, None
    step.summary = f"{len(source.splitlines())} lines compile"
    return step, tree


def _guarded_by_import_error(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """An import inside ``try: ... except ImportError`` is optional: not a problem."""
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.Try) and child in parent.body:
            for handler in parent.handlers:
                names = []
                if handler.type is None:
                    return True
                for n in ast.walk(handler.type):
                    if isinstance(n, ast.Name):
                        names.append(n.id)
                    elif isinstance(n, ast.Attribute):
                        names.append(n.attr)
                if {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"} & set(names):
                    return True
        child, parent = parent, parents.get(parent)
    return False


def missing_imports(tree: ast.Module, path: str) -> list[Problem]:
    """Absolute imports whose top-level module cannot be found, without importing anything."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    problems: list[Problem] = []
    seen: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            if top in seen or top == "__future__":
                continue
            try:
                found = importlib.util.find_spec(top) is not None
            except (ImportError, ValueError):
                found = False
            if not found and not _guarded_by_import_error(node, parents):
                seen.add(top)
                problems.append(Problem(
                    "missing_import",
                    f"cannot import `{module}`: no module named `{top}` is installed",
                    file=path, line=node.lineno, column=node.col_offset + 1,
                    hint=pip_hint(top),
                ))
    return problems


def add_search_paths(path: str) -> None:
    """The engine's rule: the algorithm's folder first, then its parent when that holds an
    ``indicators/`` folder (see src/python/loader.rs)."""
    root = os.path.dirname(path)
    project = os.path.dirname(root)
    if os.path.isdir(os.path.join(project, "indicators")) and project not in sys.path:
        sys.path.insert(0, project)
    if root not in sys.path:
        sys.path.insert(0, root)


def module_name_for(path: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    clean = "".join(c if c.isalnum() or c == "_" else "_" for c in stem)
    return "_rustybt_algo_" + (f"_{clean}" if clean[:1].isdigit() else clean)


def load_module(path: str, source: str) -> types.ModuleType:
    """Executes the file as the engine does: compiled with its absolute path, into a fresh
    module registered under a private name."""
    name = module_name_for(path)
    module = types.ModuleType(name)
    module.__file__ = path
    sys.modules[name] = module
    code = compile(source, path, "exec", dont_inherit=True)
    try:
        exec(code, module.__dict__)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def exception_problem(kind: str, err: BaseException, user_files: set[str], what: str) -> Problem:
    text = "".join(traceback.format_exception(err))
    file, line = user_location(err.__traceback__, user_files)
    message = f"{what}: {type(err).__name__}: {err}"
    hint = None
    if isinstance(err, ModuleNotFoundError) and err.name:
        kind, hint = "missing_import", pip_hint(err.name)
        message = f"cannot import `{err.name}`: no module named `{err.name}` is installed"
    return Problem(kind, message, file=file, line=line, traceback=text, hint=hint)


def _defined_line(obj: Any) -> int | None:
    try:
        return inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        return code.co_firstlineno if code else None


def _file_of(obj: Any) -> str | None:
    try:
        return inspect.getsourcefile(obj)
    except TypeError:
        return None


def pick_class(module: types.ModuleType, wanted: str | None, path: str) -> tuple[type | None, list[Problem]]:
    from rustybt_api import Algorithm

    candidates = [
        value for value in vars(module).values()
        if isinstance(value, type) and value is not Algorithm and issubclass(value, Algorithm)
        and value.__module__ == module.__name__
    ]
    names = ", ".join(f"`{c.__name__}` (line {_defined_line(c)})" for c in candidates)
    if wanted is not None:
        for c in candidates:
            if c.__name__ == wanted:
                return c, []
        return None, [Problem(
            "class_not_found", f"the file defines no `Algorithm` subclass named `{wanted}`",
            file=path, hint=f"classes found: {names}" if candidates else "the file defines no Algorithm subclass",
        )]
    if not candidates:
        return None, [Problem(
            "no_algorithm", "the file defines no subclass of rustybt_api.Algorithm", file=path,
            hint="define `class MyAlgorithm(Algorithm):` in this file (an imported one does not count)",
        )]
    if len(candidates) > 1:
        return None, [Problem(
            "several_algorithms", f"the file defines {len(candidates)} Algorithm subclasses: {names}",
            file=path, line=_defined_line(candidates[1]),
            hint="choose one with `--class NAME`",
        )]
    return candidates[0], []


def _positional_count(func: Any) -> tuple[int, int, bool]:
    """(required positional parameters, all positional parameters, has *args) after self."""
    sig = inspect.signature(func)
    params = list(sig.parameters.values())[1:]
    required = sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty)
    total = sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    star = any(p.kind == p.VAR_POSITIONAL for p in params)
    kwonly = [p for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    if kwonly:
        required = 99  # the engine passes nothing by keyword
    return required, total, star


def check_method(owner: type, name: str, expected: list[str], what: str) -> Problem | None:
    """``name`` as defined on ``owner`` takes exactly ``expected`` after self."""
    raw = inspect.getattr_static(owner, name)
    func = raw
    file, line = _file_of(getattr(raw, "__func__", raw)), _defined_line(getattr(raw, "__func__", raw))
    want = f"def {name}(self{''.join(', ' + e for e in expected)})"
    if isinstance(raw, (staticmethod, classmethod, property)):
        return Problem("bad_signature", f"{what}.{name} is a {type(raw).__name__}; the engine calls it on the instance as `{want}`", file=file, line=line)
    if not inspect.isfunction(func):
        return None  # a callable object: cannot inspect, the dry run will tell
    if inspect.iscoroutinefunction(func) or inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        kind = "a coroutine (async def)" if not inspect.isgeneratorfunction(func) else "a generator (it yields)"
        return Problem("bad_signature", f"{what}.{name} is {kind}: the engine calls it and ignores the result, so its body never runs", hint=f"use `{want}:`", file=file, line=line)
    required, total, star = _positional_count(func)
    if required > len(expected) or (total < len(expected) and not star):
        return Problem(
            "bad_signature",
            f"{what}.{name}{inspect.signature(func)} does not match the engine's call `{want}`",
            hint=f"write it as `{want}:`", file=file, line=line,
        )
    return None


def check_parameters(params: dict[str, Any], owner: type, what: str, path: str, step: Step) -> None:
    for name, value in params.items():
        line = _attribute_line(owner, name)
        if isinstance(value, float) and not math.isfinite(value):
            step.fail(Problem("bad_parameter", f"parameter `{name}` of {what} is {value!r}", file=path, line=line,
                              hint="give it a finite default"))
        elif isinstance(value, float) and MONEYISH.search(name):
            step.warn(Problem("float_money", f"parameter `{name}` of {what} is a float ({value!r}); orders refuse float quantities and prices",
                              file=path, line=line, hint=f'use Decimal("{value!r}") or an int'))
        elif isinstance(value, Decimal) and not value.is_finite():
            step.fail(Problem("bad_parameter", f"parameter `{name}` of {what} is {value}", file=path, line=line,
                              hint="give it a finite default"))
        elif isinstance(value, (list, tuple, dict, set, frozenset)):
            try:
                ast.literal_eval(repr(value))
            except (ValueError, SyntaxError):
                step.warn(Problem("parameter_type", f"parameter `{name}` of {what} holds {type(value).__name__} values that `--param` cannot express",
                                  file=path, line=line, hint=f"rename it `_{name}` if it is not a parameter"))
        elif not isinstance(value, PARAMETER_TYPES):
            step.warn(Problem(
                "parameter_type",
                f"parameter `{name}` of {what} is a {type(value).__name__}; `--param` can set only bool, int, float, Decimal, str and literals",
                file=path, line=line, hint=f"rename it `_{name}` if it is not a parameter",
            ))


def _attribute_line(owner: type, name: str) -> int | None:
    for klass in owner.__mro__:
        if name in vars(klass):
            try:
                lines, start = inspect.getsourcelines(klass)
            except (OSError, TypeError):
                return None
            for offset, text in enumerate(lines):
                if re.match(rf"\s+{re.escape(name)}\s*(:[^=]*)?=", text):
                    return start + offset
            return start
    return None


def misnamed_hooks(cls: type) -> list[Problem]:
    """Methods whose names look like a hook but are not one: the engine never calls them.
    ``rustybt validate`` and ``rustybt run`` both warn about them."""
    return [
        Problem("unknown_hook", f"{cls.__name__}.{name} is never called by the engine", file=file, line=line,
                hint=f"did you mean `{suggestion}`?")
        for name, suggestion, file, line in _hooks.misnamed_hooks(cls)
    ]


def check_algorithm(cls: type, path: str, step: Step) -> None:
    from rustybt_api import Algorithm
    from rustybt_api.algorithm import parameters_of

    what = cls.__name__
    for hook, arg in HOOKS.items():
        if getattr(cls, hook) is getattr(Algorithm, hook):
            continue
        problem = check_method(cls, hook, [arg], what)
        if problem:
            step.fail(problem)
    for problem in misnamed_hooks(cls):
        step.warn(problem)
    init = inspect.getattr_static(cls, "__init__")
    if inspect.isfunction(init):
        required, _, _ = _positional_count(init)
        if required:
            step.fail(Problem("bad_signature", f"{what}.__init__{inspect.signature(init)} needs arguments; the engine creates the algorithm with none",
                              file=_file_of(init), line=_defined_line(init), hint="take only self; read parameters in initialize"))
    check_parameters(parameters_of(cls), cls, what, path, step)


def find_indicators(module: types.ModuleType) -> list[type[Indicator]]:
    """Indicator subclasses the file defines or imports (not rustybt's own)."""
    from rustybt_api import Indicator

    found = []
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, Indicator) and value is not Indicator:
            if not value.__module__.startswith("rustybt_api"):
                found.append(value)
    return found


def check_indicator(cls: type[Indicator], step: Step) -> None:
    from rustybt_api import Indicator
    from rustybt_api.indicator import indicator_parameters

    what = cls.__name__
    file, line = _file_of(cls), _defined_line(cls)
    has_update = hasattr(cls, "update")
    has_calculate = cls.calculate is not Indicator.calculate
    if not has_update and not has_calculate:
        step.fail(Problem("bad_indicator", f"indicator {what} defines neither calculate(self, bars) nor update(self, bar)",
                          file=file, line=line, hint="define one of them"))
    if has_update:
        problem = check_method(cls, "update", ["bar"], what)
        if problem:
            step.fail(problem)
    if has_calculate:
        problem = check_method(cls, "calculate", ["bars"], what)
        if problem:
            step.fail(problem)
    outputs = cls.outputs
    if (not isinstance(outputs, (tuple, list)) or not outputs or not all(isinstance(o, str) and o for o in outputs)
            or len(set(outputs)) != len(outputs)):
        step.fail(Problem("bad_indicator", f"{what}.outputs is {outputs!r}: it must be a tuple of distinct names",
                          file=file, line=_attribute_line(cls, "outputs") or line, hint='e.g. outputs = ("upper", "lower")'))
    if not isinstance(cls.warm_up, int) or isinstance(cls.warm_up, bool) or cls.warm_up < 0:
        step.fail(Problem("bad_indicator", f"{what}.warm_up is {cls.warm_up!r}: it must be an int >= 0",
                          file=file, line=_attribute_line(cls, "warm_up") or line))
    window = cls.window
    if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window < 1):
        step.fail(Problem("bad_indicator", f"{what}.window is {window!r}: it must be None or an int >= 1",
                          file=file, line=_attribute_line(cls, "window") or line))
    timeframe = cls.timeframe
    if timeframe is not None and (not isinstance(timeframe, str) or not TIMEFRAME.match(timeframe)):
        step.fail(Problem("bad_indicator", f"{what}.timeframe is {timeframe!r}: it must be None or a duration like \"5m\", \"1h\", \"1d\"",
                          file=file, line=_attribute_line(cls, "timeframe") or line))
    check_parameters(indicator_parameters(cls), cls, f"indicator {what}", file or "", step)
    try:
        cls()
    except Exception as err:  # noqa: BLE001 - reported with its traceback
        step.fail(exception_problem("indicator_init", err, {file} if file else set(), f"{what}() with its default parameters failed"))


# --- metrics from the source -------------------------------------------------------------

_DECISIONS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.IfExp, ast.ExceptHandler, ast.Assert, ast.match_case)


def complexity(func: ast.AST) -> int:
    """McCabe's cyclomatic complexity: 1 + decision points, nested functions excluded."""
    score = 1
    stack = list(ast.iter_child_nodes(func))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, _DECISIONS):
            score += 1
        elif isinstance(node, ast.BoolOp):
            score += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            score += 1 + len(node.ifs)
        stack.extend(ast.iter_child_nodes(node))
    return score


def function_metrics(tree: ast.Module, path: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                out.append({
                    "function": name, "file": path, "line": child.lineno,
                    "lines": (child.end_lineno or child.lineno) - child.lineno + 1,
                    "complexity": complexity(child),
                })
                visit(child, f"{name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
    visit(tree, "")
    return out
