"""engine/data/segue_ring.h compiles on its own, as promised to plugin builds: included
first in a file that asks for no POSIX features, under strict C99 and C11."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HEADER_DIR = Path(__file__).resolve().parent.parent / "engine" / "data"
USE = (
    '#include "segue_ring.h"\n'
    "int main(void) {\n"
    "    segue_ring ring; float block[512];\n"
    '    (void)segue_ring_open(&ring, "segue");\n'
    "    segue_ring_read(&ring, block, 256, 2); segue_ring_poll(&ring); segue_ring_close(&ring);\n"
    "    return 0;\n"
    "}\n"
)


@pytest.mark.parametrize(
    "flags",
    [
        ["-std=c99", "-Wall", "-Wextra", "-Werror"],
        ["-std=c11", "-pedantic", "-Wall", "-Werror"],
        ["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror"],
    ],
    ids=["c99-wextra", "c11-pedantic", "c99-pedantic"],
)
def test_the_ring_header_compiles_alone(tmp_path, flags):
    if shutil.which("cc") is None:
        pytest.fail("no C compiler (cc): the README's test command installs one (gcc)")
    source = tmp_path / "use.c"
    source.write_text(USE)
    result = subprocess.run(
        ["cc", *flags, f"-I{HEADER_DIR}", str(source), "-o", str(tmp_path / "use")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
