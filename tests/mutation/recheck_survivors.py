"""Re-run mutmut's survivors against every test FILE that holds a test mutmut listed for the
mutated function, not the listed tests alone.

Why: mutmut picks a mutant's tests by which tests called the function while it collected its
statistics. A module-scoped fixture's calls count for the first test that used it only, and a
function changed after the statistics were taken may have none ("no tests"), so tests that would
kill a mutant may never run against it. Run after `make mutation` (from the repository root);
results go to a JSON file beside mutmut's, mutmut's own are left as they are.

    python tests/mutation/recheck_survivors.py [--budget SECONDS] [--first SUBSTRING ...]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MUTANTS = Path("mutants")
RESULTS = MUTANTS / "recheck.json"
SURVIVED, NO_TESTS = 0, 33


def survivors(done: dict) -> list[str]:
    keys = []
    for meta in glob.glob(str(MUTANTS / "sit_onnx" / "**" / "*.meta"), recursive=True):
        for key, code in json.loads(Path(meta).read_text())["exit_code_by_key"].items():
            if code in (SURVIVED, NO_TESTS) and key not in done:
                keys.append(key)
    return keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=3600, help="seconds after which no new mutant starts")
    parser.add_argument("--first", nargs="*", default=[], help="mutants whose name holds one of these go first")
    args = parser.parse_args()
    stats = json.loads((MUTANTS / "mutmut-stats.json").read_text())["tests_by_mangled_function_name"]
    done = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    todo = sorted(survivors(done), key=lambda k: (not any(s in k for s in args.first), k))
    deadline = time.time() + args.budget

    def run(key: str) -> tuple[str, int | None]:
        files = sorted({t.split("::")[0] for t in stats.get(key.rsplit("__mutmut_", 1)[0], [])})
        if not files or time.time() > deadline:
            return key, NO_TESTS if not files else None
        env = {**os.environ, "MUTANT_UNDER_TEST": key, "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not gpu", *files]
        try:
            return key, subprocess.run(command, cwd=MUTANTS, env=env, capture_output=True, timeout=900).returncode
        except subprocess.TimeoutExpired:
            return key, 24

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for key, code in pool.map(run, todo):
            if code is not None:
                done[key] = code
                RESULTS.write_text(json.dumps(done))
    killed = sum(1 for k in todo if done.get(k) not in (None, SURVIVED, NO_TESTS, 5))
    print(f"{len(todo)} survivors re-checked: {killed} killed, {sum(1 for k in todo if k not in done)} not reached")


if __name__ == "__main__":
    main()
