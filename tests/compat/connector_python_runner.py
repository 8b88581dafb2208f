#!/usr/bin/env python3
"""Runs MySQL Connector/Python's own unittests.py (from its sdist, in the current directory)
and writes one line per test to OUT: `PASS id`, `FAIL id` or `SKIP id`.

    python3 connector_python_runner.py OUT TIMEOUT [unittests.py options...]

Each test (set-up and tear-down included), and each class or module set-up and tear-down,
gets TIMEOUT seconds (SIGALRM, raised again every 5 s until it ends, as BaseException inside a
test so that the client's own `except Exception` cannot swallow it), so a hang fails instead
of stalling the run. A class or module whose set-up fails is one FAIL line,
`module.Class::setUpClass`.
"""
import os
import re
import signal
import sys
import time
import unittest
import unittest.suite

out_path, timeout = sys.argv[1], int(sys.argv[2])
sys.argv = ["unittests.py"] + sys.argv[3:]
sys.path.insert(0, os.getcwd())

import unittests  # noqa: E402  (the sdist's runner; puts lib/ first on sys.path)

outcome = {}  # test id -> PASS/FAIL/SKIP, in run order


class TestTimeout(BaseException):
    """Raised inside a test: unittest's test-part executor reports any exception."""


class FixtureTimeout(Exception):
    """Raised in a class or module fixture: unittest reports only Exception there."""


in_test = False


def _alarm(signum, frame):
    signal.alarm(5)  # again, in case the first one is caught and the wait resumed
    if in_test:
        raise TestTimeout(f"test took longer than {timeout}s")
    raise FixtureTimeout(f"class or module fixture took longer than {timeout}s")


def _with_alarm(fn):
    def wrapper(*args, **kwargs):
        signal.alarm(timeout)
        try:
            return fn(*args, **kwargs)
        finally:
            signal.alarm(0)

    return wrapper


for _name in ("_handleClassSetUp", "_handleModuleFixture", "_tearDownPreviousClass",
              "_handleModuleTearDown"):
    setattr(unittest.suite.TestSuite, _name, _with_alarm(getattr(unittest.suite.TestSuite, _name)))


signal.signal(signal.SIGALRM, _alarm)


def _id(test):
    tid = test.id()
    m = re.match(r"^(\w+) \((.+)\)$", tid)  # _ErrorHolder: "setUpClass (tests.x.Class)"
    return f"{m.group(2)}::{m.group(1)}" if m else tid


class RecordingResult(unittests.BasicTestResult):
    def startTest(self, test):
        global in_test
        self._t0 = time.time()
        in_test = True
        signal.alarm(timeout)
        super().startTest(test)

    def stopTest(self, test):
        global in_test
        signal.alarm(0)
        in_test = False
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
