"""The README's ten-line example runs exactly as written and says what it claims."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _example() -> str:
    text = README.read_text()
    section = text[text.index("## Ten lines"):]
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match, "README's 'Ten lines' section has no python block"
    return match.group(1)


def test_the_ten_line_example_runs_as_written():
    code = _example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 (our own README)
    printed = out.getvalue().splitlines()
    mmcs = float(printed[0])
    assert 0.9 <= mmcs <= 1.0  # it learned most of the 512 true features
    result, report = namespace["result"], namespace["report"]
    assert result.success and result.n_iter == namespace["config"].n_steps
    assert report.amortisation.gap >= -1e-6  # the encoder never beats optimal codes
    told = "\n".join(printed[1:])
    for part in ("encoder", "code KKT", "atom stationarity", "hierarchy"):
        assert part in told, part
