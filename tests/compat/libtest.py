#!/usr/bin/env python3
"""Runs one Rust libtest binary and appends its per-test results in the suite format.

    libtest.py OUT PREFIX TIMEOUT BINARY [LIBTEST-ARGS...]

Lists the binary's tests first (`--list`), runs it with the given arguments, and parses the
lines `test NAME ... ok|FAILED|ignored`. Appends `PASS|FAIL|SKIP PREFIX::NAME` to OUT. A
listed test with no result line (the binary crashed, hung past TIMEOUT seconds, or a
--skip filter left it out) is reported as FAIL, or as SKIP when a --skip filter names it.
The binary's full output goes to stdout for the suite's log.
"""
import re
import subprocess
import sys

RESULT = re.compile(r"^test (\S+)(?: - should panic)? \.\.\. (ok|FAILED|ignored)\b")


def main():
    out, prefix, timeout, binary, *args = sys.argv[1:]
    listed = subprocess.run([binary, "--list", "--format", "terse"], capture_output=True, text=True)
    names = [l[: -len(": test")] for l in listed.stdout.splitlines() if l.endswith(": test")]
    skips = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--skip"]
    results = {}
    try:
        proc = subprocess.Popen([binary, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
        timed_out = False
        try:
            stdout, _ = proc.communicate(timeout=float(timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, _ = proc.communicate()
            timed_out = True
        sys.stdout.write(stdout)
        if timed_out:
            print(f"libtest.py: {binary} killed after {timeout}s")
        for line in stdout.splitlines():
            m = RESULT.match(line)
            if m:
                results[m.group(1)] = {"ok": "PASS", "FAILED": "FAIL", "ignored": "SKIP"}[m.group(2)]
    finally:
        with open(out, "a") as f:
            for name in names:
                status = results.get(name)
                if status is None:
                    status = "SKIP" if any(s in name for s in skips) else "FAIL"
                f.write(f"{status} {prefix}::{name}\n")


if __name__ == "__main__":
    main()
