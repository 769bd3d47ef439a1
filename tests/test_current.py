"""The one "is this output current?" check (src/io/current.py): weights sha256, tol, domain, input files."""
import os

from src.core.box import Box
from src.io.current import output_is_current, record_is_current, record_mismatch
from src.io.files import atomic_write_json, file_sha256


def test_record_is_current_compares_sha_tol_and_domain():
    box = Box.uniform(3)
    rec = {"weights_sha256": "ab" * 32, "tol": 1e-6, "domain": box.to_json()}
    assert record_is_current(rec, "ab" * 32)
    assert record_is_current(rec, "ab" * 32, tol=1e-6, domain=box)
    assert record_is_current(rec, "ab" * 32, tol=1e-6, domain="input_0_1")
    assert not record_is_current(rec, "cd" * 32)
    assert not record_is_current(rec, None)
    assert not record_is_current(rec, "ab" * 32, tol=1e-7)
    assert not record_is_current(rec, "ab" * 32, domain=Box.uniform(3, 0, 2))
    assert not record_is_current(rec, "ab" * 32, domain="input_0_2")
    assert not record_is_current({"tol": 1e-6}, "ab" * 32)          # written before sha256 was recorded
    assert not record_is_current(None, "ab" * 32)
    assert not record_is_current({**rec, "tol": "x"}, "ab" * 32, tol=1e-6)


def test_record_mismatch_says_which_field_differs():
    """The reason beside the answer (count_linear_regions --resume names it); missing_ok judges a record without a
    sha256 or domain (a frontier file) by what it holds."""
    box = Box.uniform(3)
    rec = {"weights_sha256": "ab" * 32, "tol": 1e-6, "domain": box.to_json(), "layer_sizes": [3, 4, 1]}
    assert record_mismatch(rec, "ab" * 32, tol=1e-6, domain=box, layer_sizes=[3, 4, 1]) is None
    assert record_mismatch(rec, "cd" * 32)[0] == "weights"
    assert record_mismatch(rec, "ab" * 32, layer_sizes=[3, 5, 1])[0] == "weights"
    kind, reason = record_mismatch(rec, "ab" * 32, tol=1e-5)
    assert kind == "tol" and "--tol 1e-06" in reason and "--tol 1e-05" in reason
    assert record_mismatch(rec, "ab" * 32, domain="input_0_2") == ("domain", "written for domain input_0_1, not "
                                                                             "input_0_2")
    assert "other box" in record_mismatch(rec, "ab" * 32, domain=Box(box.lo, box.hi * 2, box.name))[1]
    ck = {"weights_sha256": "ab" * 32, "tol": 1e-6, "domain": "input_0_1"}     # a checkpoint names its domain
    assert record_is_current(ck, "ab" * 32, tol=1e-6, domain="input_0_1")
    assert not record_is_current(ck, "ab" * 32, domain="input_0_2")
    frontier = {"tol": 1e-6, "layer_sizes": [3, 4, 1]}                      # no sha256, no domain
    assert record_mismatch(frontier, "ab" * 32, tol=1e-6, domain="input_0_1", missing_ok=True) is None
    assert record_mismatch(frontier, "ab" * 32, tol=1e-6)[0] == "weights"
    assert record_mismatch(frontier, None, tol=1e-7, missing_ok=True)[0] == "tol"
    assert record_mismatch({**rec, "weights_sha256": "cd" * 32}, "ab" * 32, missing_ok=True)[0] == "weights"


def test_output_is_current_reads_contents_not_file_times(tmp_path):
    w, pats, out = tmp_path / "weights.dat", tmp_path / "p.dat", tmp_path / "out.json"
    w.write_text("weights one")
    pats.write_text("n = [2, 2, 1]\n1 0\n")
    assert not output_is_current(out, w)                               # missing output
    atomic_write_json(out, {"weights_sha256": file_sha256(w), "tol": 1e-6, "domain": {"name": "input_0_1"},
                            "patterns_sha256": file_sha256(pats)})
    assert output_is_current(out, w, tol=1e-6, domain="input_0_1", inputs={"patterns_sha256": pats})
    os.utime(out, (1000, 1000))                                        # older than its inputs: still current
    assert output_is_current(out, w, tol=1e-6, domain="input_0_1", inputs={"patterns_sha256": pats})
    pats.write_text("n = [2, 2, 1]\n1 1\n")                            # another pattern list
    assert not output_is_current(out, w, inputs={"patterns_sha256": pats})
    assert output_is_current(out, w)
    w.write_text("weights two")                                        # other weights
    assert not output_is_current(out, w)
    out.write_text("{not json")                                        # unreadable: not current, no error
    assert not output_is_current(out, w)
    assert not output_is_current(out, tmp_path / "missing.dat")
