"""Every notebook in notebooks/ runs headless with nbclient (as `jupyter nbconvert --execute` would)."""

import pathlib
import time

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
    # A batch run keeps the reactive cell's outputs as ordinary outputs in the cell.
    (reactive,) = [c for c in nb.cells if "per_class.value() as usize" in c.source]
    texts = [o.get("text", "") for o in reactive.outputs if o.output_type == "stream"]
    assert any("200 images; resnet8_int8 loaded 1 time(s)" in t for t in texts), reactive.outputs
    assert any("text/html" in o.get("data", {}) for o in reactive.outputs)
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert "application/vnd.jupyter.widget-state+json" in html
    assert "application/vnd.jupyter.widget-view+json" in html


def test_executed_playground_shows_its_results_without_widgets(tmp_path):
    """`nbconvert --execute` of the playground, then `--to markdown` and `--to html` read
    offline: the quick evaluation table, the histogram and the SQNR chart are in the cells as
    ordinary outputs (not only inside widget state, which needs a widget manager from a CDN)."""
    from nbconvert import MarkdownExporter

    nb = nbformat.read(ROOT / "notebooks" / "playground.ipynb", as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="qplay", resources={"metadata": {"path": str(tmp_path)}}).execute()
    (edit,) = [c for c in nb.cells if "with_scale" in c.source]
    data = [o["data"] for o in edit.outputs if "data" in o]
    assert not any("application/vnd.jupyter.widget-view+json" in d for d in data), data
    assert any('class="qplay-eval"' in d.get("text/html", "") for d in data)
    assert sum("image/svg+xml" in d for d in data) == 2, "the histogram and the SQNR chart"
    # The model's graph: the widget view, then the same picture as SVG (coloured by the overlay
    # it shows, xmodel_err) as an output of its own, for viewers without a widget manager —
    # nbconvert's HTML export shows only the view of a bundle that has one.
    (graph,) = [c for c in nb.cells if "model_graph.show" in c.source]
    view, shown = [o["data"] for o in graph.outputs if "data" in o]
    assert set(view) == {"application/vnd.jupyter.widget-view+json", "text/plain"}
    assert 'class="qplay-graph"' in shown["image/svg+xml"] and "xmodel_err: SQNR" in shown["text/html"]
    assert shown["text/html"].startswith('<div class="qplay-graph-twin">')
    markdown, _ = MarkdownExporter().from_notebook_node(nb)
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert 'class="qplay-graph"' in markdown
    # The exported page has the view's placeholder and the picture itself, inline.
    assert "application/vnd.jupyter.widget-view+json" in html
    assert '<div class="qplay-graph-twin"><svg' in html and 'class="qplay-graph"' in html
    for page in (markdown, html):
        assert 'class="qplay-eval"' in page and "95 % CI" in page
        # The edit cell's histogram and SQNR chart, and the sensitivity chart.
        assert page.count("<svg") >= 3, page.count("<svg")


def _normalized_outputs(cells):
    """Each code cell's outputs, without what differs between two runs of the same code: widget
    model ids, execution counts and elapsed times ("0.27 s")."""
    import json
    import re

    text = json.dumps([[{k: v for k, v in o.items() if k not in ("execution_count", "metadata")}
                        for o in outputs] for outputs in cells], sort_keys=True)
    text = re.sub(r'"model_id": "[0-9a-f-]+"', '"model_id": "…"', text)
    return re.sub(r"\b\d+(\.\d+)? m?s\b", "… s", text)


def test_run_all_gives_what_cell_by_cell_runs_give(tmp_path):
    """Run All (nbclient sends every cell at once, back to back) and the same cells run one at a
    time with pauses between them (as by hand, so the kernel is idle in between) give the same
    outputs in every cell."""
    from jupyter_client.manager import start_new_kernel

    path = ROOT / "notebooks" / "playground.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="qplay", resources={"metadata": {"path": str(tmp_path)}}).execute()
    run_all = [c.outputs for c in nb.cells if c.cell_type == "code"]

    km, kc = start_new_kernel(kernel_name="qplay", startup_timeout=300, cwd=str(tmp_path))
    by_hand = []
    try:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            outputs, shown = [], {}  # shown: display id → the outputs that display it

            def keep(msg, outputs=outputs, shown=shown):
                """As nbclient keeps a cell's outputs: streams joined, displays updated in place."""
                kind, content = msg["msg_type"], msg["content"]
                display_id = content.get("transient", {}).get("display_id")
                if kind == "update_display_data":
                    for output in shown.get(display_id, []):
                        output["data"], output["metadata"] = content["data"], content["metadata"]
                elif kind == "clear_output":
                    outputs.clear()
                elif kind in ("stream", "display_data", "execute_result", "error"):
                    output = nbformat.v4.output_from_msg(msg)
                    if kind == "stream" and outputs and outputs[-1].get("name") == output["name"] \
                            and outputs[-1]["output_type"] == "stream":
                        outputs[-1]["text"] += output["text"]
                    else:
                        outputs.append(output)
                        if display_id:
                            shown.setdefault(display_id, []).append(output)

            kc.execute_interactive(cell.source, timeout=900, output_hook=keep)
            by_hand.append(outputs)
            time.sleep(0.5)  # idle: the kernel wraps reactive cells meanwhile
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    a, b = _normalized_outputs(by_hand), _normalized_outputs(run_all)
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    assert a == b, f"by hand: …{a[at - 300:at + 300]}…\nRun All: …{b[at - 300:at + 300]}…"
