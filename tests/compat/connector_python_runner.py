#!/usr/bin/env python3
"""Runs MySQL Connector/Python's own unittests.py (from its sdist, in the current directory)
and writes one line per test to OUT: `PASS id`, `FAIL id` or `SKIP id`.

    python3 connector_python_runner.py OUT TIMEOUT [unittests.py options...]

Each test gets TIMEOUT seconds (SIGALRM), so a test that hangs fails instead of stalling the
run. A class or module whose set-up fails is one FAIL line, `module.Class::setUpClass`.
"""
import os
import re
import signal
import sys
import time

out_path, timeout = sys.argv[1], int(sys.argv[2])
sys.argv = ["unittests.py"] + sys.argv[3:]
sys.path.insert(0, os.getcwd())

import unittests  # noqa: E402  (the sdist's runner; puts lib/ first on sys.path)

outcome = {}  # test id -> PASS/FAIL/SKIP, in run order


class TestTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise TestTimeout(f"test took longer than {timeout}s")


signal.signal(signal.SIGALRM, _alarm)


def _id(test):
    tid = test.id()
    m = re.match(r"^(\w+) \((.+)\)$", tid)  # _ErrorHolder: "setUpClass (tests.x.Class)"
    return f"{m.group(2)}::{m.group(1)}" if m else tid


class RecordingResult(unittests.BasicTestResult):
    def startTest(self, test):
        self._t0 = time.time()
        signal.alarm(timeout)
        super().startTest(test)

    def stopTest(self, test):
        signal.alarm(0)
        super().stopTest(test)
        if self.showAll:
            self.stream.writeln(f"    [{time.time() - self._t0:.2f}s]")

    def _set(self, test, state):
        tid = _id(test)
        if state == "FAIL" or tid not in outcome:
            outcome[tid] = state
        elif state == "SKIP" and outcome[tid] == "PASS":
            outcome[tid] = "SKIP"

    def addSuccess(self, test):
        super().addSuccess(test)
        self._set(test, "PASS")

    def addError(self, test, err):
        super().addError(test, err)
        self._set(test, "FAIL")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._set(test, "FAIL")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._set(test, "SKIP")

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._set(test, "PASS")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._set(test, "FAIL")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._set(test, "FAIL")


unittests.BasicTestRunner.resultclass = RecordingResult


def write():
    with open(out_path, "w") as f:
        for tid, state in outcome.items():
            f.write(f"{state} {tid}\n")


try:
    unittests.main()
except SystemExit:
    pass
finally:
    write()
