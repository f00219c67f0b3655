"""``autonomic detect``: CSV in, CSV with anomaly_score out, with the documented bad-input rules."""

from __future__ import annotations

import csv
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from autonomic.analyze.detect_cli import detect_app, detect_files, score_matrix
from autonomic.errors import ConfigError


def write(path: Path, rows: list[tuple[str, str]], header: str = "timestamp,value") -> Path:
    path.write_text("\n".join([header, *(f"{t},{v}" for t, v in rows)]) + "\n")
    return path


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def series(n: int, seed: int = 0, spike_at: int | None = None) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    vals = 50 + rng.normal(0, 1, n)
    if spike_at is not None:
        vals[spike_at] += 40
    return [(f"2024-01-01 00:{i // 60:02d}:{i % 60:02d}", f"{v:.3f}") for i, v in enumerate(vals)]


def test_writes_one_scored_row_per_input_row_in_order(tmp_path: Path) -> None:
    src = write(tmp_path / "a.csv", series(400, spike_at=350))
    out = tmp_path / "out"
    detect_files([src], out)
    rows = read(out / "a.csv")
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score"]
    assert [(r["timestamp"], r["value"]) for r in rows] == series(400, spike_at=350)
    scores = np.array([float(r["anomaly_score"]) for r in rows])
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores[350] == scores.max() > 0


def test_scores_are_streaming_a_prefix_scores_the_same(tmp_path: Path) -> None:
    full = series(300, seed=1, spike_at=250)
    detect_files([write(tmp_path / "full.csv", full)], tmp_path / "o1")
    detect_files([write(tmp_path / "full.csv", full[:200])], tmp_path / "o2")
    a = [r["anomaly_score"] for r in read(tmp_path / "o1" / "full.csv")][:200]
    b = [r["anomaly_score"] for r in read(tmp_path / "o2" / "full.csv")]
    assert a == b


def test_several_files_score_as_if_each_ran_alone(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", series(300, seed=2, spike_at=200))
    b = write(tmp_path / "b.csv", series(120, seed=3))
    detect_files([a, b], tmp_path / "both")
    detect_files([b], tmp_path / "alone")
    assert read(tmp_path / "both" / "b.csv") == read(tmp_path / "alone" / "b.csv")


@pytest.mark.parametrize("header,missing", [("time,value", "timestamp"), ("timestamp,val", "value")])
def test_missing_column_names_the_file_and_column(tmp_path: Path, header: str, missing: str) -> None:
    bad = write(tmp_path / "bad.csv", [("1", "2")], header=header)
    with pytest.raises(ConfigError) as err:
        detect_files([bad], tmp_path / "out")
    assert "bad.csv" in str(err.value) and missing in str(err.value)
    assert not (tmp_path / "out").exists()


def test_unparsable_nan_and_inf_values_are_missing_and_score_zero(tmp_path: Path) -> None:
    rows = series(200, seed=4)
    rows[150] = (rows[150][0], "oops")
    rows[151] = (rows[151][0], "nan")
    rows[152] = (rows[152][0], "inf")
    rows[153] = (rows[153][0], "")
    detect_files([write(tmp_path / "g.csv", rows)], tmp_path / "out")
    got = read(tmp_path / "out" / "g.csv")
    assert [r["value"] for r in got[150:154]] == ["oops", "nan", "inf", ""]
    assert [float(r["anomaly_score"]) for r in got[150:154]] == [0.0] * 4


def test_duplicate_and_out_of_order_timestamps_are_kept_in_file_order(tmp_path: Path) -> None:
    rows = series(100, seed=5)
    rows[50] = rows[49]
    rows[60], rows[61] = rows[61], rows[60]
    detect_files([write(tmp_path / "d.csv", rows)], tmp_path / "out")
    got = read(tmp_path / "out" / "d.csv")
    assert [(r["timestamp"], r["value"]) for r in got] == rows


@pytest.mark.parametrize("content", ["", "timestamp,value\n"])
def test_empty_file_gives_header_only(tmp_path: Path, content: str) -> None:
    src = tmp_path / "e.csv"
    src.write_text(content)
    detect_files([src], tmp_path / "out")
    assert (tmp_path / "out" / "e.csv").read_text() == "timestamp,value,anomaly_score\n"


def test_huge_magnitudes_give_finite_scores_without_warnings(tmp_path: Path) -> None:
    rows = [(f"t{i}", repr(v)) for i, v in enumerate([1e300, -1e300, 1.7e308, 5e-324] * 50)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        detect_files([write(tmp_path / "h.csv", rows)], tmp_path / "out")
    scores = [float(r["anomaly_score"]) for r in read(tmp_path / "out" / "h.csv")]
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_constant_file_scores_zero_everywhere() -> None:
    (scores,) = score_matrix([np.full(500, 7.5)])
    assert not scores.any()


def test_typer_app_scores_files_and_exits_2_on_bad_input(tmp_path: Path) -> None:
    src = write(tmp_path / "a.csv", series(50))
    result = CliRunner().invoke(detect_app, [str(src), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert len(read(tmp_path / "out" / "a.csv")) == 50
    bad = write(tmp_path / "b.csv", [("1", "2")], header="x,value")
    result = CliRunner().invoke(detect_app, [str(bad), "--out", str(tmp_path / "o2")])
    assert result.exit_code == 2 and "timestamp" in result.output


def test_a_file_that_is_not_utf8_text_exits_2_naming_it(tmp_path: Path) -> None:
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00timestamp,value\n")
    result = CliRunner().invoke(detect_app, [str(binary), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "bin.csv" in result.output and "cannot read" in result.output


def test_module_entry_point_runs(tmp_path: Path) -> None:
    src = write(tmp_path / "a.csv", series(30))
    proc = subprocess.run([sys.executable, "-m", "autonomic.analyze.detect_cli", str(src), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "a.csv").exists()


def test_a_field_beyond_the_csv_modules_limit_exits_2_naming_the_file_and_line(tmp_path: Path) -> None:
    """A cell of 200,000 characters (csv's limit is 131,072) is bad input, not a traceback."""
    huge = write(tmp_path / "huge.csv", [("1", "2"), ("2", "x" * 200_000), ("3", "4")])
    result = CliRunner().invoke(detect_app, [str(huge), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "huge.csv:3" in result.output and "field larger than field limit" in result.output
    assert not (tmp_path / "out" / "huge.csv").exists()


def test_an_out_dir_holding_the_input_is_refused_and_the_input_kept(tmp_path: Path) -> None:
    """``--out`` the input's own folder would replace the input by its scores (its other columns
    lost): refused, exit 2, naming the file and --out; nothing is written."""
    src = tmp_path / "a.csv"
    src.write_text("timestamp,value,note\n1,2,first\n2,3,second\n")
    (tmp_path / "elsewhere").mkdir()
    other = write(tmp_path / "elsewhere" / "b.csv", series(5))
    result = CliRunner().invoke(detect_app, [str(other), str(src), "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "a.csv" in result.output and "--out" in result.output and "overwrite" in result.output
    assert src.read_text() == "timestamp,value,note\n1,2,first\n2,3,second\n"
    assert not (tmp_path / "b.csv").exists()


def test_an_out_dir_reached_by_another_path_is_still_refused(tmp_path: Path) -> None:
    """The same folder through a symlink is the same output file."""
    (tmp_path / "data").mkdir()
    src = write(tmp_path / "data" / "a.csv", series(5))
    before = src.read_text()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    with pytest.raises(ConfigError) as exc:
        detect_files([src], tmp_path / "link")
    assert exc.value.problems[0].field == "--out"
    assert src.read_text() == before


def test_an_unreadable_row_in_the_second_file_writes_no_file_at_all(tmp_path: Path) -> None:
    """A file that turns bad after its header (invalid UTF-8 in a row) fails the run, exit 2,
    and no output of any input is left, not even a partial one or a temporary file."""
    good = write(tmp_path / "good.csv", series(50))
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"timestamp,value\n1,2\n2,\xff\xfe\n3,4\n")
    result = CliRunner().invoke(detect_app, [str(good), str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "bad.csv" in result.output and "cannot read" in result.output
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_an_out_that_is_a_file_exits_2_naming_out(tmp_path: Path) -> None:
    src = write(tmp_path / "a.csv", series(5))
    (tmp_path / "taken").write_text("x")
    result = CliRunner().invoke(detect_app, [str(src), "--out", str(tmp_path / "taken")])
    assert result.exit_code == 2 and "--out" in result.output, result.output
    assert (tmp_path / "taken").read_text() == "x"


def test_scoring_streams_a_file_rather_than_holding_its_rows(tmp_path: Path) -> None:
    """Memory does not grow with the file: scoring 200,000 rows allocates (tracemalloc's peak)
    far less than holding them would (each row's strings alone take over 100 bytes)."""
    import tracemalloc

    src = tmp_path / "long.csv"
    with src.open("w") as fh:
        fh.write("timestamp,value\n")
        fh.writelines(f"{1_700_000_000 + i},{50 + (i % 7) * 0.5}\n" for i in range(200_000))

    class Cheap:  # a stand-in detector, so the test measures the reading and writing only
        def update(self, values: np.ndarray) -> np.ndarray:
            return np.zeros_like(values)

    tracemalloc.start()
    try:
        detect_files([src], tmp_path / "out", Cheap())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(read(tmp_path / "out" / "long.csv")) == 200_000
    assert peak < 5_000_000, f"peak {peak:,} bytes for 200,000 rows"


def test_an_output_gets_the_permissions_any_new_file_there_gets(tmp_path: Path) -> None:
    """Written under a temporary name and renamed, an output is still made with the umask's mode
    (not a private temporary file's 0600)."""
    src = write(tmp_path / "a.csv", series(5))
    detect_files([src], tmp_path / "out")
    plain = tmp_path / "out" / "plain"
    plain.write_text("")
    assert (tmp_path / "out" / "a.csv").stat().st_mode == plain.stat().st_mode


def test_an_output_path_taken_by_a_directory_exits_2_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    src = write(tmp_path / "a.csv", series(5))
    (tmp_path / "out" / "a.csv").mkdir(parents=True)
    result = CliRunner().invoke(detect_app, [str(src), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.csv"]
