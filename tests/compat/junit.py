#!/usr/bin/env python3
"""Turns a JUnit XML report into the suite result format: `PASS id`, `FAIL id`, `SKIP id`."""
import sys
import xml.etree.ElementTree as ET

def main(path, out):
    root = ET.parse(path).getroot()
    lines = []
    for case in root.iter("testcase"):
        cid = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("skipped") is not None:
            lines.append(f"SKIP {cid}")
        elif case.find("failure") is not None or case.find("error") is not None:
            lines.append(f"FAIL {cid}")
        else:
            lines.append(f"PASS {cid}")
    with open(out, "w") as f:
        f.write("\n".join(lines) + ("\n" if lines else ""))

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
