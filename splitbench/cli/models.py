"""``splitbench models``: the zoo, with input sizes and split points."""

from __future__ import annotations

import pandas as pd

from splitbench.cli import app
from splitbench.cli.render import console, show_table
from splitbench.zoo import get_spec, list_models


@app.command("models")
def models_command() -> None:
    """List the zoo's models (the papers' networks), their input size and the papers' names for their cuts."""
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
    show_table(pd.DataFrame(rows), title="splitbench model zoo", source=None)
    console.print(
        "Any torchvision classification model works by its name (resnet18, convnext_tiny, …), timm "
        "models as timm:NAME, and your own as FILE.py:FUNCTION or package.module:FUNCTION. "
        "`splitbench profile MODEL` lists a model's valid cuts."
    )
