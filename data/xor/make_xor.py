"""Regenerate data/xor/xor.csv: the four rows of the XOR truth table.

Pure Python, no dependencies::

    python data/xor/make_xor.py
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "xor.csv")
    args = parser.parse_args()

    lines = ["x1,x2,y"]
    for x1 in (0, 1):
        for x2 in (0, 1):
            lines.append(f"{x1},{x2},{x1 ^ x2}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out} ({len(lines) - 1} rows)")


if __name__ == "__main__":
    main()
