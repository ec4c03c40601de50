"""The papers' tables shipped with splitbench are exact copies of ../shared/reference."""

from __future__ import annotations

import pytest
from conftest import SHARED

from splitbench.codecs.report import load_paper_rows
from splitbench.errors import SplitbenchError
from splitbench.references import list_references, load_reference


@pytest.mark.skipif(not (SHARED / "reference").is_dir(), reason="no ../shared/reference")
@pytest.mark.parametrize("name", list_references())
def test_shipped_tables_are_byte_for_byte_the_shared_ones(name: str) -> None:
    from importlib import resources

    shipped = (resources.files("splitbench.references") / f"{name}.csv").read_bytes()
    assert shipped == (SHARED / "reference" / f"{name}.csv").read_bytes()


def test_tables_load_by_name_and_unknown_names_list_the_valid_ones() -> None:
    assert {"seed002_vit_pruning", "seed003_bpg_classification", "seed003_sizes_and_macs"} <= set(list_references())
    assert load_reference("seed002_vit_pruning").loc[0, "cpu_ms_1000_images"] == 8257.53
    with pytest.raises(SplitbenchError, match="unknown reference table 'seed999'; valid: seed000"):
        load_reference("seed999")


def test_seed003_codec_rows_join_bpg_and_webp(tmp_path) -> None:
    rows = load_paper_rows()
    bpg35 = rows[(rows["codec"] == "bpg") & (rows["param"] == 35)]
    assert set(rows["codec"]) >= {"bpg", "webp", "none"} and len(bpg35) >= 1
    with pytest.raises(SplitbenchError, match="missing seed003_bpg_classification.csv"):
        load_paper_rows(tmp_path)
