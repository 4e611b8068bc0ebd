#!/usr/bin/env python3
"""Summary of a nextest JUnit report for .ci/run: totals, and every test that skipped itself.

A test that cannot run on this machine returns early and counts as passed; before it returns it
prints `TESTKIT-SKIPPED <test> <reason>` (testkit::skip). The `ci` profile keeps the output of
passing tests in the report (`store-success-output`), so this lists each such test with its reason
and says how many of the passed tests did not test anything. Tests that ran but left parts out say
so with lines starting `SKIPPED scenario` (the e2e scenario run): listed too, as skipped parts.

Usage: summary.py JUNIT_XML. Prints indented lines for .ci/run's summary; exits 2 when the report
cannot be read.
"""

import sys
import xml.etree.ElementTree as ET

SKIP_MARKER = "TESTKIT-SKIPPED "
PART_MARKER = "SKIPPED scenario"


def output_lines(case):
    for tag in ("system-out", "system-err"):
        for element in case.iter(tag):
            for line in (element.text or "").splitlines():
                yield line.strip()


def summarize(path):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuites" else []
    totals = suites[0].attrib if suites else {}
    cases = list(root.iter("testcase"))
    skipped, parts = [], []
    for case in cases:
        test = f"{case.get('classname', '?')} {case.get('name', '?')}"
        failed = any(case.find(t) is not None for t in ("failure", "error"))
        for line in output_lines(case):
            if line.startswith(SKIP_MARKER):
                # The marker, the name the test printed (the report's name is authoritative), the reason.
                reason = line[len(SKIP_MARKER):].split(" ", 1)
                if not failed:
                    skipped.append((test, reason[1] if len(reason) > 1 else "no reason given"))
                break
        for line in output_lines(case):
            if line.startswith(PART_MARKER):
                parts.append((test, line))
    tests = int(totals.get("tests", len(cases)))
    out = [
        f"tests: {tests}, of which skipped at run time: {len(skipped)}"
        f" (failures: {totals.get('failures', '?')}, errors: {totals.get('errors', '?')})"
    ]
    if skipped:
        out.append(f"skipped at run time ({len(skipped)}; counted as passed by nextest, tested nothing):")
        out += [f"  {test}: {reason}" for test, reason in sorted(skipped)]
    if parts:
        out.append(f"parts skipped inside tests that ran ({len(parts)}):")
        out += [f"  {test}: {line}" for test, line in parts]
    return out


def main():
    if len(sys.argv) != 2:
        print("usage: summary.py JUNIT_XML", file=sys.stderr)
        return 2
    try:
        lines = summarize(sys.argv[1])
    except (OSError, ET.ParseError) as e:
        print(f"    cannot read the JUnit report {sys.argv[1]}: {e}")
        return 2
    for line in lines:
        print(f"    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
