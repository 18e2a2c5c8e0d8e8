"""The cost of a book of strategies (issue 17): ten strategies on 50 symbols of one-minute
bars must cost at most 1.2 × (the sum of the ten strategies' own Python time + one engine pass).

    .venv/bin/python benches/portfolio.py [--symbols 50] [--sessions 26] [--repeat 3]

- The data: `--symbols` × `--sessions` × 390 one-minute bars in one file
  (examples/make_panel_data.py).
- The book: ten copies of benches/algos/book_member.py (offsets 0..9, each trading the whole
  universe), fixed equal weights, no rebalancing.
- Each strategy's own Python time: the hook timings (`on_tick`, `on_fill`, ... seconds) of a
  plain `rustybt run` of it with the same parameters and a tenth of the cash.
- One engine pass: the loop time of a plain run of benches/algos/empty_tick.py minus its hook time.

Loop times are the `N bars in X s` of each run (the clock loop, without process start, data
load or writing). Figures are medians of `--repeat` runs. Prints a table and writes
benches/results/portfolio.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benches"))
sys.path.insert(0, str(ROOT / "examples"))

from make_panel_data import write_panel  # noqa: E402
from run_benchmarks import BIN, run_measured  # noqa: E402

ALGOS = ROOT / "benches" / "algos"
DATA_DIR = ROOT / "bench-data"
CASH = 10_000_000
STRATEGIES = 10


def loop_seconds(stderr: str) -> float:
    found = re.search(r"bars in ([\d.]+) s", stderr)
    if not found:
        sys.exit(f"no loop time in:\n{stderr}")
    return float(found.group(1))


def hook_seconds(stderr: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(r"^\w+\s+\d+ calls\s+([\d.]+) s", stderr, re.M))


def plain(algo: Path, data: Path, out: Path, *params: str, cash: int) -> tuple[float, float]:
    argv = [str(BIN), "run", "--algo", str(algo), "--data", str(data), "--out", str(out),
            "--no-progress", "--quiet", "--cash", str(cash)]
    for p in params:
        argv += ["--param", p]
    result, _, _ = run_measured(argv)
    return loop_seconds(result.stderr), hook_seconds(result.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=26)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    DATA_DIR.mkdir(exist_ok=True)
    data = DATA_DIR / f"book-{args.symbols}x{args.sessions}.csv"
    if not data.exists():
        write_panel(data, args.symbols, args.sessions)
    member = ALGOS / "book_member.py"
    rounds = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            strategies = "".join(
                f'[[strategy]]\nid = "m{i}"\nalgo = "{member}"\nparams = {{ offset = {i} }}\n'
                for i in range(STRATEGIES)
            )
            book_file = tmp_path / "book.toml"
            book_file.write_text(f'[portfolio]\ncash = "{CASH}"\nnetting = false\n{strategies}')
            result, process, rss = run_measured(
                [str(BIN), "run", "--portfolio", str(book_file), "--data", str(data),
                 "--out", str(tmp_path / "book"), "--no-progress", "--quiet"])
            book = loop_seconds(result.stderr)
            own = [plain(member, data, tmp_path / f"m{i}", f"offset={i}", cash=CASH // STRATEGIES)
                   for i in range(STRATEGIES)]
            noop_loop, noop_hooks = plain(ALGOS / "empty_tick.py", data, tmp_path / "noop", cash=CASH)
            engine = noop_loop - noop_hooks
            python = sum(h for _, h in own)
            rounds.append({
                "book_loop_seconds": book,
                "book_process_seconds": process,
                "book_peak_rss_mib": rss,
                "strategies_python_seconds": python,
                "strategies_loop_seconds": sum(loop for loop, _ in own),
                "engine_pass_seconds": engine,
                "ratio": book / (python + engine),
            })
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    bars = args.symbols * args.sessions * 390
    report = {
        "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
        "bars": bars,
        "strategies": STRATEGIES,
        "median": median,
        "rounds": rounds,
    }
    out = ROOT / "benches" / "results"
    out.mkdir(exist_ok=True)
    (out / "portfolio.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{STRATEGIES} strategies x {args.symbols} symbols, {bars:,} bars; medians of {args.repeat}")
    print(f"  book loop                        {median['book_loop_seconds']:.3f} s "
          f"(process {median['book_process_seconds']:.2f} s, peak RSS {median['book_peak_rss_mib']:.0f} MiB)")
    print(f"  sum of the strategies' Python    {median['strategies_python_seconds']:.3f} s")
    print(f"  one engine pass                  {median['engine_pass_seconds']:.3f} s")
    print(f"  sum of ten plain runs' loops     {median['strategies_loop_seconds']:.3f} s")
    print(f"  ratio book / (Python + engine)   {median['ratio']:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
