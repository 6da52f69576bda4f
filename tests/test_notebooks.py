"""Every notebook in notebooks/ runs headless with nbclient (as `jupyter nbconvert --execute` would)."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_without_error(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="qplay", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert outputs, "the notebook produced no output at all"


def test_widget_state_is_saved_and_exported(tmp_path):
    """nbclient stores the widgets' state in the notebook, so `nbconvert --to html` shows them."""
    nb = nbformat.read(ROOT / "notebooks" / "02-reactive.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="qplay", resources={"metadata": {"path": str(tmp_path)}}).execute()
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    names = {m["model_name"] for m in state.values()}
    assert {"IntSliderModel", "DropdownModel", "VBoxModel", "OutputModel", "LayoutModel"} <= names
    slider = next(m for m in state.values() if m["model_name"] == "IntSliderModel")
    assert slider["state"]["value"] == 20
    # The reactive cell's output area holds its outputs, and its text fallback is in the cell.
    areas = [m["state"]["outputs"] for m in state.values() if m["model_name"] == "OutputModel"]
    assert any("200 images; resnet8_int8 loaded 1 time(s)" in str(a) for a in areas)
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert "application/vnd.jupyter.widget-state+json" in html
    assert "application/vnd.jupyter.widget-view+json" in html
