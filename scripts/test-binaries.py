#!/usr/bin/env python3
"""Lists the test executables of `cargo test --no-run --message-format=json`
(read from the file named by the first argument), one per line:
group, package directory, executable, label, separated by tabs.

scripts/test.sh runs the groups at once. The gateway's end-to-end themes
mostly wait on their peers, so the slow ones are spread over groups 1 and 2;
everything else, including any new theme, is group 3.
"""

import json
import os
import sys

GROUPS = {"durability": 1, "outputs": 1, "protocols": 2, "journeys": 2, "cli": 2}
KIND_ORDER = {"lib": 0, "bin": 1, "test": 2}


def main() -> None:
    rows = set()
    with open(sys.argv[1], encoding="utf-8") as f:
        for line in f:
            try:
                m = json.loads(line)
            except ValueError:
                continue
            if m.get("reason") != "compiler-artifact" or not m.get("executable"):
                continue
            if not m.get("profile", {}).get("test"):
                continue
            target = m["target"]
            kind = target["kind"][0]
            package_dir = os.path.dirname(m["manifest_path"])
            group = 3
            if os.path.basename(package_dir) == "edge-gateway" and kind == "test":
                group = GROUPS.get(target["name"], 3)
            source = os.path.relpath(target["src_path"], package_dir)
            label = f"{os.path.basename(package_dir)}: {source}"
            rows.add((group, package_dir, KIND_ORDER.get(kind, 3), target["name"], m["executable"], label))
    for group, package_dir, _, _, executable, label in sorted(rows):
        print(group, package_dir, executable, label, sep="\t")


if __name__ == "__main__":
    main()
