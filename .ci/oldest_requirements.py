"""Print the oldest versions pyproject.toml's dependencies allow, as pip requirements.

Each ``NAME>=X.Y`` becomes ``NAME==X.Y.*`` (the newest patch release of the declared minimum),
so the CI step ``make test-oldest`` always tests the lower bounds that are declared.
"""

import re
from pathlib import Path

text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
block = re.search(r"^dependencies = \[(.*?)^\]", text, re.DOTALL | re.MULTILINE).group(1)
for line in block.splitlines():
    line = line.split("#", 1)[0]
    match = re.search(r'"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*>=\s*([0-9][0-9.]*)', line)
    if match:
        print(f"{match.group(1)}=={match.group(3)}.*")
