"""``splitbench models``: the zoo, with input sizes and split points."""

from __future__ import annotations

import pandas as pd

from splitbench.cli import app
from splitbench.cli.render import show_table
from splitbench.zoo import get_spec, list_models


@app.command("models")
def models_command() -> None:
    """List the zoo's models, their input size and their named split points."""
    rows = []
    for name in list_models():
        spec = get_spec(name)
        rows.append(
            {
                "model": name,
                "task": spec.task,
                "input": spec.input_size,
                "split points": " ".join(spec.split_points),
                "description": spec.description,
            }
        )
    show_table(pd.DataFrame(rows), title="splitbench model zoo")
