"""Output directories: one holder at a time (also across processes), no leftovers after a failed start."""
from __future__ import annotations

import subprocess
import sys
import tempfile

import pytest

from dfnas.files import DirectoryInUse, atomic_write_bytes, exclusive_directory, remove_leftover_temporaries

HOLD_AND_REPORT = """
import sys, time
from dfnas.files import exclusive_directory
with exclusive_directory(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_holder_is_refused_in_the_same_process(tmp_path):
    with exclusive_directory(tmp_path / "out"):
        with pytest.raises(DirectoryInUse, match="in use by another dfnas run"):
            with exclusive_directory(tmp_path / "out"):
                pass
    with exclusive_directory(tmp_path / "out"):  # released at the end of the block
        pass


def test_a_second_process_is_refused_and_a_killed_holder_releases(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AND_REPORT, str(out)], stdout=subprocess.PIPE, text=True,
                              cwd=tempfile.gettempdir())
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DirectoryInUse):
            with exclusive_directory(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive_directory(out):  # the kernel dropped the dead process's lock
        pass


def test_a_failed_start_leaves_no_directory_but_keeps_existing_work(tmp_path):
    with pytest.raises(RuntimeError):
        with exclusive_directory(tmp_path / "new"):
            raise RuntimeError("failed before writing anything")
    assert not (tmp_path / "new").exists()
    with pytest.raises(RuntimeError):
        with exclusive_directory(tmp_path / "new") as out:
            (out / "result.json").write_text("{}")
            raise RuntimeError("failed after writing")
    assert (tmp_path / "new" / "result.json").exists()


def test_an_output_that_is_a_file_or_unwritable_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        with exclusive_directory(tmp_path / "file"):
            pass
    with pytest.raises(DirectoryInUse, match="not writable"):
        with exclusive_directory(tmp_path / "file" / "below"):
            pass


def test_leftover_temporaries_are_removed(tmp_path):
    atomic_write_bytes(tmp_path / "kept.bin", b"x")
    (tmp_path / ".kept.bin.abc.tmp").write_bytes(b"half")
    assert remove_leftover_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.bin"]
