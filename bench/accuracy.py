"""Posture accuracy on labelled photos of real people (issue 12).

    .venv/bin/python bench/accuracy.py [--data ../shared/data/sitting-posture-dev.csv]
                                       [--min-visibility 0.2] [--no-cv] [--rows]

Reads the keypoints of the public sitting-posture sample from outside the repository (its
README is next to it; nothing from it is ever copied here), maps the COCO keypoints to the
MediaPipe indices, builds deskpulse.pose.Pose objects and runs the real `classify` and the
real `Calibrator`: front rows with view="front", left and right rows with view="side".

Per view it prints balanced accuracy (the mean of bad caught and good kept; an `unknown`
counts as neither) and the share of `unknown`:
- uncalibrated: the default baseline, what a new user gets;
- calibrated: per subject and camera side, a baseline from the subject's OTHER ergonomic
  photos through the Calibrator (leave one out), what a user who pressed Calibrate gets;
  "1 photo" calibrates from each single other ergonomic photo in turn;
each with the shipped thresholds (which were fitted on this whole sample) and
leave-one-subject-out cross-validated (the thresholds re-fitted without the subject, then
used on it): the cross-validated figure is the honest one.

Fitting, the same procedure in every fold and for the values shipped in PostureConfig and
Baseline: coordinate ascent over a coarse grid of round values (GRID) for each fitted margin
and default, maximising the mean of the uncalibrated and the calibrated balanced accuracy
on the training subjects; ties go to the middle of the best run of values. The shoulder
tilt and lean-in thresholds are not fitted: 1-pixel keypoints make ~2 degrees of tilt noise
here, and the sample's framing says nothing about the distance to a screen.

Prints figures; asserts nothing. Never used by a test.
"""

from __future__ import annotations

import argparse
import csv
import functools
import sys
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deskpulse.calibration import CalibrationFailed, Calibrator  # noqa: E402
from deskpulse.config import PostureConfig  # noqa: E402
from deskpulse.pose import Landmark, Pose  # noqa: E402
from deskpulse.posture import RULES, Baseline, Reading, classify  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "sitting-posture-dev.csv"
FRAME = 256  # the sample's keypoints are pixels of a 256x256 frame
# COCO keypoint name -> MediaPipe pose landmark index (what the classifier reads).
COCO_TO_MEDIAPIPE = {
    "NOSE": 0, "LEFT_EYE": 2, "RIGHT_EYE": 5, "LEFT_EAR": 7, "RIGHT_EAR": 8,
    "LEFT_SHOULDER": 11, "RIGHT_SHOULDER": 12, "LEFT_ELBOW": 13, "RIGHT_ELBOW": 14,
    "LEFT_WRIST": 15, "RIGHT_WRIST": 16, "LEFT_HIP": 23, "RIGHT_HIP": 24,
}
# The study's two class names: the good one, and the same word with the "non-" prefix (read
# from the data at run time; nothing of the data set is kept in this repository).
BAD_PREFIX = "non-"


def _is_label(name: str) -> bool:
    return bool(name) and name.replace(BAD_PREFIX, "", 1).isalpha()
# What the fit may choose: PostureConfig margins and ("default", metric) Baseline defaults.
GRID: dict[str, dict[str | tuple[str, str], tuple[float, ...]]] = {
    "front": {
        "head_drop": (0.08, 0.10, 0.12, 0.14, 0.16, 0.18, 0.20, 0.24),
        "torso_drop": (0.10, 0.15, 0.20, 0.25, 0.30, 0.40),
        ("default", "nose_height"): (0.25, 0.30, 0.35, 0.40, 0.45, 0.50),
        ("default", "torso_height"): (1.20, 1.25, 1.30, 1.35, 1.40, 1.50),
    },
    "side": {
        "neck_deg": (8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 24.0),
        "torso_deg": (6.0, 8.0, 10.0, 12.0, 14.0, 16.0),
        "recline_deg": (6.0, 8.0, 10.0, 12.0, 15.0, 20.0),
        "head_pitch_deg": (20.0, 25.0, 30.0, 35.0, 40.0, 50.0),
        ("default", "neck_deg"): (5.0, 8.0, 10.0, 12.0, 15.0),
        ("default", "torso_deg"): (-6.0, -4.0, -2.0, 0.0, 2.0),
        ("default", "head_pitch_deg"): (10.0, 15.0, 20.0, 25.0),
    },
}
VIEWS = ("front", "side")


class DataError(Exception):
    """The data file is missing or not what the README describes (one line for the user)."""


@dataclass(frozen=True)
class Row:
    name: str
    subject: str
    camera: str  # front | left | right
    bad: bool
    pose: Pose

    @property
    def view(self) -> str:
        return "front" if self.camera == "front" else "side"


def load(path: Path) -> list[Row]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            records = list(csv.DictReader(fh))
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    needed = {"file_name", "subject_id", "class_name", "view_type"}
    needed |= {f"{k}_{c}" for k in COCO_TO_MEDIAPIPE for c in ("x", "y", "score")}
    missing = needed - set(records[0] if records else ())
    if missing:
        raise DataError(f"{path}: not the sitting-posture keypoint file (missing columns: "
                        f"{', '.join(sorted(missing)[:4])}{' ...' if len(missing) > 4 else ''})")
    rows = []
    for n, rec in enumerate(records, start=2):
        if not _is_label(rec["class_name"]) or rec["view_type"] not in ("front", "left", "right"):
            raise DataError(f"{path}:{n}: unexpected class_name {rec['class_name']!r} or view_type {rec['view_type']!r}")
        marks = [Landmark(0.0, 0.0, 0.0)] * 33
        try:
            for name, index in COCO_TO_MEDIAPIPE.items():
                marks[index] = Landmark(float(rec[f"{name}_x"]), float(rec[f"{name}_y"]), float(rec[f"{name}_score"]))
        except ValueError as exc:
            raise DataError(f"{path}:{n}: {exc}") from None
        rows.append(Row(rec["file_name"], rec["subject_id"], rec["view_type"], rec["class_name"].startswith(BAD_PREFIX),
                        Pose(tuple(marks), FRAME, FRAME)))
    return rows


# ---------- calibration and judging --------------------------------------------------------

@dataclass(frozen=True)
class Setup:
    """The thresholds under test: per-view config and the default (uncalibrated) baseline."""

    configs: dict[str, PostureConfig]
    defaults: Baseline


def calibrate(photos: Sequence[Row], setup: Setup) -> Baseline | None:
    """The real Calibrator fed one photo per 0.2 s frame; None when it refuses."""
    if not photos:
        return None
    view = photos[0].view
    return _calibrate(tuple(photos), setup.configs[view].min_visibility, setup.defaults)


@functools.lru_cache(maxsize=None)
def _calibrate(photos: tuple[Row, ...], min_visibility: float, defaults: Baseline) -> Baseline | None:
    # Margins do not change what a calibration measures, so the cache keys on the rest.
    view = photos[0].view
    cfg = PostureConfig(view=view, min_visibility=min_visibility)
    cal = Calibrator(view, seconds=0.2 * len(photos), started=0.0, defaults=defaults)
    for i, row in enumerate(photos):
        cal.add(classify(row.pose, cfg, defaults), 0.2 * i)
    try:
        return cal.result(0.2 * len(photos))
    except CalibrationFailed:
        return None


def own_good_photos(row: Row, rows: Sequence[Row]) -> list[Row]:
    """The subject's other ergonomic photos from the same camera position."""
    return [r for r in rows if r.subject == row.subject and r.camera == row.camera and not r.bad and r is not row]


@dataclass
class Tally:
    """Verdicts on labelled rows: a confusion matrix with an `unknown` column."""

    counts: dict[tuple[bool, str], int]
    failed_calibrations: int = 0

    @classmethod
    def of(cls, verdicts: Iterable[tuple[bool, str]], failed: int = 0) -> "Tally":
        counts: dict[tuple[bool, str], int] = defaultdict(int)
        for bad, posture in verdicts:
            counts[(bad, posture)] += 1
        return cls(dict(counts), failed)

    def n(self, bad: bool) -> int:
        return sum(v for (b, _), v in self.counts.items() if b == bad)

    def rate(self, bad: bool, posture: str) -> float:
        total = self.n(bad)
        return self.counts.get((bad, posture), 0) / total if total else float("nan")

    @property
    def caught(self) -> float:
        return self.rate(True, "bad")

    @property
    def kept(self) -> float:
        return self.rate(False, "good")

    @property
    def balanced(self) -> float:
        return (self.caught + self.kept) / 2

    @property
    def unknown(self) -> float:
        total = self.n(True) + self.n(False)
        unk = self.counts.get((True, "unknown"), 0) + self.counts.get((False, "unknown"), 0)
        return unk / total if total else float("nan")


def judge_uncalibrated(rows: Sequence[Row], setup: Setup) -> list[tuple[Row, Reading]]:
    return [(r, classify(r.pose, setup.configs[r.view], setup.defaults)) for r in rows]


def judge_calibrated(rows: Sequence[Row], pool: Sequence[Row], setup: Setup,
                     single: bool = False) -> tuple[list[tuple[Row, Reading]], list[Row]]:
    """Rows whose subject has another ergonomic photo, each judged against a baseline from
    those photos (all of them, or with `single` each one alone). Returns the verdicts and,
    once per baseline the Calibrator refused (the row is then judged by the defaults), the row."""
    out, refused = [], []
    for row in rows:
        others = own_good_photos(row, pool)
        for photos in ([[o] for o in others] if single else [others] if others else []):
            baseline = calibrate(photos, setup)
            if baseline is None:
                refused.append(row)
                baseline = setup.defaults
            out.append((row, classify(row.pose, setup.configs[row.view], baseline)))
    return out, refused


def tally(judged: Iterable[tuple[Row, Reading]], view: str, refused: Sequence[Row] = ()) -> Tally:
    return Tally.of(((row.bad, reading.posture) for row, reading in judged if row.view == view),
                    sum(row.view == view for row in refused))


# ---------- fitting ------------------------------------------------------------------------

def _apply(setup: Setup, view: str, params: dict) -> Setup:
    margins = {k: v for k, v in params.items() if isinstance(k, str)}
    defaults = {k[1]: v for k, v in params.items() if isinstance(k, tuple)}
    configs = {**setup.configs, view: setup.configs[view].model_copy(update=margins)}
    return Setup(configs, replace(setup.defaults, **defaults))


def objective(rows: Sequence[Row], view: str, setup: Setup) -> float:
    """Mean of bad caught and good kept, uncalibrated and calibrated, on these rows; a part
    with no rows (no calibrated bad photo among the training subjects) is left out."""
    mine = [r for r in rows if r.view == view]
    uncal = tally(judge_uncalibrated(mine, setup), view)
    cal = tally(judge_calibrated(mine, mine, setup)[0], view)
    parts = [t.rate(bad, "bad" if bad else "good") for t in (uncal, cal) for bad in (True, False) if t.n(bad)]
    return sum(parts) / len(parts)


def fit(train: Sequence[Row], base: Setup) -> Setup:
    """Coordinate ascent over GRID on the training rows, view by view (see the docstring)."""
    setup = base
    for view, grid in GRID.items():
        params = {k: values[len(values) // 2] for k, values in grid.items()}
        for _ in range(3):
            for key, values in grid.items():
                scores = [objective(train, view, _apply(setup, view, {**params, key: v})) for v in values]
                best = [i for i, sc in enumerate(scores) if sc >= max(scores) - 1e-9]
                run = _longest_run(best)
                params[key] = values[run[len(run) // 2]]
        setup = _apply(setup, view, params)
    return setup


def _longest_run(indices: list[int]) -> list[int]:
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return max(runs, key=len)


def cross_validate(rows: Sequence[Row], base: Setup) -> tuple[dict[str, list], dict[str, list[Row]], list[Setup]]:
    """Leave one subject out: fit without the subject, judge the subject's rows."""
    judged: dict[str, list] = {"uncal": [], "cal": [], "cal1": []}
    failed: dict[str, list[Row]] = {"cal": [], "cal1": []}
    setups = []
    for subject in sorted({r.subject for r in rows}, key=lambda s: (len(s), s)):
        held = [r for r in rows if r.subject == subject]
        setup = fit([r for r in rows if r.subject != subject], base)
        setups.append(setup)
        judged["uncal"] += judge_uncalibrated(held, setup)
        for key, single in (("cal", False), ("cal1", True)):
            out, refused = judge_calibrated(held, held, setup, single)
            judged[key] += out
            failed[key] += refused
    return judged, failed, setups


# ---------- report -------------------------------------------------------------------------

def cell(t: Tally) -> str:
    if not t.n(True) and not t.n(False):
        return "n/a"
    return f"{t.balanced:.2f} ({t.caught:.2f} / {t.kept:.2f}, unk {t.unknown:.0%})"


def confusion(t: Tally) -> str:
    lines = ["            judged: good  bad  unknown"]
    for bad in (True, False):
        lines.append(f"    {'bad ' if bad else 'good'} (n={t.n(bad):2d}):   {t.counts.get((bad, 'good'), 0):4d} "
                     f"{t.counts.get((bad, 'bad'), 0):4d} {t.counts.get((bad, 'unknown'), 0):6d}")
    return "\n".join(lines)


def describe(setup: Setup) -> str:
    parts = []
    for view in VIEWS:
        cfg = setup.configs[view]
        for rule in RULES[view]:
            base = getattr(setup.defaults, rule.metric)
            op = "<" if rule.sign < 0 else ">"
            if rule.ratio:
                parts.append(f"{rule.reason}: {rule.metric} {op} {base:.3g} x {getattr(cfg, rule.margin):.3g}")
            else:
                margin = getattr(cfg, rule.margin)
                parts.append(f"{rule.reason}: {rule.metric} {op} {base:.3g} {'-' if rule.sign < 0 else '+'} "
                             f"{margin:.3g} = {base + rule.sign * margin:.3g}")
    return "\n".join(f"  {p}" for p in parts)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the sitting-posture keypoint CSV")
    ap.add_argument("--min-visibility", type=float, default=0.2,
                    help="posture.min_visibility to evaluate at (the sample's scores run lower than MediaPipe's)")
    ap.add_argument("--no-cv", action="store_true", help="skip the cross-validation (the slow part)")
    ap.add_argument("--rows", action="store_true", help="also print every photo's verdict (shipped, uncalibrated)")
    a = ap.parse_args(argv)
    if not 0 <= a.min_visibility <= 1:
        print("error: --min-visibility must be between 0 and 1", file=sys.stderr)
        return 2
    try:
        rows = load(a.data)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    shipped = Setup({v: PostureConfig(view=v, min_visibility=a.min_visibility) for v in VIEWS}, Baseline())
    subjects = len({r.subject for r in rows})
    print(f"{a.data}: {len(rows)} photos, {subjects} subjects; min_visibility {a.min_visibility}; "
          f"an unknown counts as neither caught nor kept")
    print("cell: balanced accuracy (bad caught / good kept, unknown share)\n")

    results: dict[str, dict[str, Tally]] = defaultdict(dict)
    uncal = judge_uncalibrated(rows, shipped)
    cal, cal_failed = judge_calibrated(rows, rows, shipped)
    cal1, cal1_failed = judge_calibrated(rows, rows, shipped, single=True)
    for view in VIEWS:
        results["shipped, uncalibrated"][view] = tally(uncal, view)
        results["shipped, calibrated"][view] = tally(cal, view, cal_failed)
        results["shipped, calibrated from 1 photo"][view] = tally(cal1, view, cal1_failed)
    setups: list[Setup] = []
    if not a.no_cv:
        cv, cv_failed, setups = cross_validate(rows, shipped)
        for view in VIEWS:
            results["cross-validated, uncalibrated"][view] = tally(cv["uncal"], view)
            results["cross-validated, calibrated"][view] = tally(cv["cal"], view, cv_failed["cal"])
            results["cross-validated, calibrated from 1 photo"][view] = tally(cv["cal1"], view, cv_failed["cal1"])

    print(f"| {'':42s} | {'front':32s} | {'side':32s} |")
    print(f"|{'-' * 44}|{'-' * 34}|{'-' * 34}|")
    for name, per_view in results.items():
        print(f"| {name:42s} | {cell(per_view['front']):32s} | {cell(per_view['side']):32s} |")
    print()
    for name, per_view in results.items():
        for view in VIEWS:
            t = per_view[view]
            refused = f"; the Calibrator refused {t.failed_calibrations} baselines (defaults used)" \
                if t.failed_calibrations else ""
            print(f"{name}, {view}{refused}\n{confusion(t)}")
    at_05 = Setup({v: PostureConfig(view=v, min_visibility=0.5) for v in VIEWS}, Baseline())
    t05 = judge_uncalibrated(rows, at_05)
    print(f"\nunknown at min_visibility 0.5 (MediaPipe's default): "
          f"{sum(r.posture == 'unknown' for _, r in t05) / len(t05):.0%} of photos")

    print("\nshipped rules (uncalibrated threshold = default baseline -/+ margin):")
    print(describe(shipped))
    print(f"\nfitted on all {subjects} subjects:")
    print(describe(fit(rows, shipped)))
    if setups:
        print(f"\nspread of the per-fold fits ({len(setups)} folds): min .. max")
        for view, grid in GRID.items():
            for key in grid:
                vals = [getattr(s.defaults, key[1]) if isinstance(key, tuple) else getattr(s.configs[view], key)
                        for s in setups]
                name = f"default {key[1]}" if isinstance(key, tuple) else f"{view}.{key}"
                print(f"  {name}: {min(vals):.3g} .. {max(vals):.3g}")

    if a.rows:
        print("\nrows (shipped, uncalibrated):")
        for row, reading in uncal:
            print(f"  {row.name:45s} {'bad ' if row.bad else 'good'} -> {reading.posture:7s} "
                  f"{','.join(reading.reasons):28s} {reading.metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
