"""atomic_write: all or nothing, and the permissions of a plain open()."""

import os
import stat

import pytest

from alae_fast.utils.files import atomic_write


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_file_has_the_permissions_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / "sub" / "a.txt", "w") as f:
            f.write("hello")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("hello")
    finally:
        os.umask(old)
    written = stat.S_IMODE((tmp_path / "sub" / "a.txt").stat().st_mode)
    assert written == 0o666 & ~umask == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert (tmp_path / "sub" / "a.txt").read_text() == "hello"


def test_an_error_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(target, fsync=True) as f:
            f.write(b"new, half written")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
