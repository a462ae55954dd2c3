"""Merge evaluation reports of one protocol run in parts (``evaluate --skip N --limit M``).

    python scripts/merge_eval_reports.py part1.json part2.json --out merged.json

The clips of all parts, and their pooled table (``report.pool_clip_entries``: frame-weighted
per-clip means; FD-dlib is left out, as it needs every frame's descriptor). The parts must
share their protocol apart from the clip range, or the merge is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from talking_heads.evaluation.report import format_table, pool_clip_entries  # noqa: E402

RANGE_KEYS = ("skip", "limit", "machine", "merged_from")  # may differ between parts


def merge(reports: list[dict]) -> dict:
    protocols = [{k: v for k, v in r["protocol"].items() if k not in RANGE_KEYS}
                 for r in reports]
    if any(p != protocols[0] for p in protocols[1:]):
        raise ValueError("the reports differ in protocol (beyond the clip range)")
    clips = [clip for report in reports for clip in report["clips"]]
    names = [clip["name"] for clip in clips]
    if len(set(names)) != len(names):
        raise ValueError("a clip appears in more than one report")
    return {"protocol": {**protocols[0], "merged_from": len(reports)},
            "complete": all(r["complete"] for r in reports),
            "aggregate": pool_clip_entries(clips), "clips": clips,
            "seconds": round(sum(r["seconds"] for r in reports), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        merged = merge([json.loads(path.read_text()) for path in args.reports])
    except ValueError as error:
        print(f"cannot merge: {error}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(merged, indent=2) + "\n")
    print(format_table(merged["aggregate"]))
    print(f"{len(merged['clips'])} clips; report: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
