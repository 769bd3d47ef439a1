import numpy as np
import pytest

from src.core.errors import ToolError
from src.io.pattern_file import PatternWriter, read_patterns, write_patterns

SIZES = [2, 3, 2, 1]


def test_roundtrip(tmp_path):
    p = tmp_path / "pat.dat"
    pats = np.array([[1, 0, 1, 0, 1], [0, 0, 0, 1, 1]], np.uint8)
    write_patterns(p, SIZES, pats)
    assert p.read_text().splitlines() == ["n = [2, 3, 2, 1]", "1 0 1 0 1", "0 0 0 1 1"]
    np.testing.assert_array_equal(read_patterns(p, SIZES), pats)


def test_writer_leaves_no_file_on_error(tmp_path):
    p = tmp_path / "pat.dat"
    with pytest.raises(RuntimeError):
        with PatternWriter(p, SIZES) as w:
            w.write([1, 0, 1, 0, 1])
            raise RuntimeError("boom")
    assert not p.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("text,needle", [
    ("", "empty pattern file"),
    ("n = [2, 3, 2, 1]\n", "no patterns"),
    ("n = [2, 4, 1]\n1 0 1 0\n", "n = [2, 4, 1]"),
    ("n = [2, 3, 2, 1]\n1 0 1 0\n", "4 values, expected 5"),
    ("n = [2, 3, 2, 1]\n1 0 1 0 2\n", "must be 0 or 1"),
    ("hello\n", "expected 'n = "),
])
def test_errors(tmp_path, text, needle):
    p = tmp_path / "pat.dat"
    p.write_text(text)
    with pytest.raises(ToolError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        read_patterns(p, SIZES)


def test_duplicates_warn_and_dedupe(tmp_path):
    p = tmp_path / "pat.dat"
    p.write_text("n = [2, 3, 2, 1]\n1 0 1 0 1\n0 0 0 0 0\n1 0 1 0 1\n")
    with pytest.warns(UserWarning, match="1 duplicate"):
        pats = read_patterns(p, SIZES)
    assert pats.tolist() == [[1, 0, 1, 0, 1], [0, 0, 0, 0, 0]]


@pytest.mark.parametrize("rows", [0, 1, 7])
def test_the_two_counters_agree(tmp_path, rows):
    """count_pattern_lines (unparsed, for status checks of 10^8-pattern files) and count_patterns (checked)."""
    from src.io.pattern_file import count_pattern_lines, count_patterns

    p = tmp_path / "pat.dat"
    pats = np.random.default_rng(rows).integers(0, 2, size=(rows, 5)).astype(np.uint8)
    write_patterns(p, SIZES, pats)
    assert count_pattern_lines(p) == count_patterns(p, SIZES) == rows
    p.write_bytes(p.read_bytes() + b"\n")                   # a trailing empty line is no pattern
    assert count_pattern_lines(p) == count_patterns(p, SIZES) == rows
