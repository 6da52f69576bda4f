"""Widgets over comms and reactive reruns, under jupyter_client: the message sequences a
browser's widget manager exchanges with the kernel, checked one by one."""

import json
import time
import uuid

import pytest
from conftest import start_endless_cell

TIMEOUT = 120
VIEW = "application/vnd.jupyter.widget-view+json"


def collect(kc, msg_id, timeout=TIMEOUT):
    """IOPub messages whose parent is msg_id, up to its idle status."""
    out = []
    deadline = time.time() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(1, deadline - time.time()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        out.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return out


def execute(kc, code, cell_id=None, deleted=()):
    """Runs a cell as JupyterLab does (cellId, deletedCells); returns (reply, iopub)."""
    metadata = {"deletedCells": list(deleted)}
    if cell_id:
        metadata["cellId"] = cell_id
    content = {"code": code, "silent": False, "store_history": True,
               "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
    msg = kc.session.msg("execute_request", content, metadata=metadata)
    kc.shell_channel.send(msg)
    out = collect(kc, msg["header"]["msg_id"])
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    while reply["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
        reply = kc.get_shell_msg(timeout=TIMEOUT)
    return reply["content"], out


def send_comm(kc, comm_id, data, wait=True):
    msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data},
                         metadata={"version": "2.1.0"})
    kc.shell_channel.send(msg)
    return collect(kc, msg["header"]["msg_id"]) if wait else msg["header"]["msg_id"]


def update(kc, comm_id, state, wait=True):
    return send_comm(kc, comm_id, {"method": "update", "state": state, "buffer_paths": []}, wait)


def of_type(out, kind):
    return [m for m in out if m["msg_type"] == kind]


def opened(out, model):
    return [m for m in of_type(out, "comm_open")
            if m["content"]["data"]["state"]["_model_name"] == model]


def area_texts(out, area_id=None):
    """Texts of the outputs set on output widgets (a reactive cell's area), in order."""
    texts = []
    for m in of_type(out, "comm_msg"):
        state = m["content"]["data"].get("state", {})
        if "outputs" in state and (area_id is None or m["content"]["comm_id"] == area_id):
            parts = []
            for o in state["outputs"]:
                if o["output_type"] == "stream":
                    parts.append(o["text"])
                elif o["output_type"] == "error":
                    parts.append(f'{o["ename"]}: {o["evalue"]}')
                else:
                    parts.append(o["data"].get("text/plain", ""))
            texts.append("".join(parts))
    return texts


def area_of(out):
    (view,) = [m for m in of_type(out, "display_data") if VIEW in m["content"]["data"]]
    return view["content"]["data"][VIEW]["model_id"]


@pytest.fixture(scope="module")
def notebook(kernel):
    """A model cell, a slider cell and a cell that depends on the slider."""
    _, kc = kernel
    reply, _ = execute(kc, 'let model = load("resnet8_int8").unwrap();', "model")
    assert reply["status"] == "ok", reply
    reply, out = execute(kc, 'let scale = slider("scale", 0.0, 2.0, 1.0);\nscale', "widget")
    assert reply["status"] == "ok", reply
    (slider,) = opened(out, "FloatSliderModel")
    reply, dep = execute(
        kc, 'println!("scaled = {:.2}", scale.value() * 10.0);\nload_count("resnet8_int8")', "dep")
    assert reply["status"] == "ok", reply
    return {"slider": slider["content"]["comm_id"], "widget_out": out, "dep_out": dep,
            "area": area_of(dep)}


def test_widget_opens_with_full_state_and_displays(kernel, notebook):
    out = notebook["widget_out"]
    opens = of_type(out, "comm_open")
    assert [m["content"]["data"]["state"]["_model_name"] for m in opens] == [
        "LayoutModel", "SliderStyleModel", "FloatSliderModel"]
    for m in opens:
        assert m["content"]["target_name"] == "jupyter.widget"
        assert m["metadata"] == {"version": "2.1.0"}
        assert m["content"]["data"]["buffer_paths"] == []
    state = opens[-1]["content"]["data"]["state"]
    assert state["layout"] == "IPY_MODEL_" + opens[0]["content"]["comm_id"]
    assert state["style"] == "IPY_MODEL_" + opens[1]["content"]["comm_id"]
    assert (state["min"], state["max"], state["value"]) == (0.0, 2.0, 1.0)
    (result,) = of_type(out, "execute_result")
    assert result["content"]["data"][VIEW]["model_id"] == notebook["slider"]
    assert result["content"]["data"]["text/plain"].startswith("FloatSlider(")


def test_dependent_cell_shows_its_outputs_in_an_output_area(notebook):
    texts = area_texts(notebook["dep_out"])
    assert texts[-1] == "scaled = 10.00\n1"
    # The text fallback for viewers without widgets follows at the end.
    (fallback,) = of_type(notebook["dep_out"], "update_display_data")
    assert "scaled = 10.00" in fallback["content"]["data"]["text/plain"]


def test_update_echoes_and_reruns_dependents_only(kernel, notebook):
    _, kc = kernel
    out = update(kc, notebook["slider"], {"value": 1.5})
    kinds = [m["msg_type"] for m in out]
    assert kinds[0] == "status" and kinds[-1] == "status"
    echo = of_type(out, "comm_msg")[0]["content"]
    assert echo["comm_id"] == notebook["slider"]
    assert echo["data"] == {"method": "echo_update", "state": {"value": 1.5}, "buffer_paths": []}
    # The dependent cell reran into its own area; the model was not reloaded and the
    # slider's cell did not rerun (no new slider).
    assert area_texts(out, notebook["area"])[-1] == "scaled = 15.00\n1"
    assert not of_type(out, "comm_open")


def test_request_state_and_reload_protocol(kernel, notebook):
    _, kc = kernel
    out = send_comm(kc, notebook["slider"], {"method": "request_state"})
    (answer,) = of_type(out, "comm_msg")
    assert answer["content"]["data"]["method"] == "update"
    assert answer["content"]["data"]["state"]["_model_name"] == "FloatSliderModel"
    # A page reload: the control comm asks for every state at once.
    control = str(uuid.uuid4())
    msg = kc.session.msg("comm_open", {"comm_id": control, "target_name": "jupyter.widget.control",
                                       "data": {}}, metadata={"version": "1.0.0"})
    kc.shell_channel.send(msg)
    collect(kc, msg["header"]["msg_id"])
    out = send_comm(kc, control, {"method": "request_states"})
    (states,) = of_type(out, "comm_msg")
    data = states["content"]["data"]
    assert data["method"] == "update_states"
    slider = data["states"][notebook["slider"]]
    assert slider["model_name"] == "FloatSliderModel"
    assert slider["model_module"] == "@jupyter-widgets/controls"
    assert slider["state"]["value"] == 1.5
    assert notebook["area"] in data["states"]
    # comm_info lists every model under its target.
    kc.comm_info()
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    comms = reply["content"]["comms"]
    assert comms[notebook["slider"]] == {"target_name": "jupyter.widget"}
    assert comms[control] == {"target_name": "jupyter.widget.control"}


def test_bad_comm_input_is_answered_sanely(kernel, notebook):
    _, kc = kernel
    slider = notebook["slider"]
    # Unknown comm, malformed update, wrong type, out of range: no crash, no change.
    assert of_type(update(kc, "no-such-comm", {"value": 1}), "status")
    send_comm(kc, slider, {"method": "update", "state": "not an object"})
    for bad in [{"value": "big"}, {"value": 99.0}, {"nonsense": 1}]:
        out = update(kc, slider, bad)
        (resync,) = of_type(out, "comm_msg")
        assert resync["content"]["data"]["method"] == "update"
        assert "value" not in resync["content"]["data"]["state"] or \
            resync["content"]["data"]["state"]["value"] == 1.5
        assert not area_texts(out)
    # The kernel lives on and the value is unchanged (the probe uses the slider, so its
    # result shows in its output area).
    reply, out = execute(kc, "scale.value()", "probe")
    assert reply["status"] == "ok"
    assert area_texts(out)[-1] == "1.5"


def test_rapid_updates_coalesce_to_the_last_value(kernel, notebook):
    _, kc = kernel
    ids = [update(kc, notebook["slider"], {"value": round(i / 100, 2)}, wait=False)
           for i in range(200)]
    seen = []
    for msg_id in ids:
        seen.extend(collect(kc, msg_id))
    texts = area_texts(seen, notebook["area"])
    assert texts[-1] == "scaled = 19.90\n1"
    assert len(texts) < 100, f"{len(texts)} reruns for 200 updates"
    assert len([m for m in of_type(seen, "comm_msg")
                if m["content"]["data"]["method"] == "echo_update"]) == 200


def test_rerun_chain_stops_at_the_first_error(kernel, notebook):
    _, kc = kernel
    update(kc, notebook["slider"], {"value": 1.0})
    reply, first = execute(
        kc, 'let checked = if scale.value() > 1.8 { panic!("too large: {}", scale.value()) } '
            'else { scale.value() };\nchecked', "check")
    assert reply["status"] == "ok", reply
    reply, second = execute(kc, 'format!("after {checked}")', "after")
    assert reply["status"] == "ok", reply
    after_area = area_of(second)
    out = update(kc, notebook["slider"], {"value": 1.9})
    texts = area_texts(out, area_of(first))
    assert texts and "too large: 1.9" in texts[-1] and "Panic: " in texts[-1], texts
    assert not area_texts(out, after_area), "the chain went on after the error"
    out = update(kc, notebook["slider"], {"value": 0.5})
    assert area_texts(out, after_area)[-1] == '"after 0.5"'


def test_deleted_cells_are_forgotten(kernel, notebook):
    _, kc = kernel
    execute(kc, 'let gone = scale.value();\ngone', "to-delete")
    execute(kc, "1 + 1", "other", deleted=["to-delete", "check", "after", "probe"])
    out = update(kc, notebook["slider"], {"value": 0.25})
    reran = {m["content"]["comm_id"] for m in of_type(out, "comm_msg")
             if "outputs" in m["content"]["data"].get("state", {})}
    assert reran == {notebook["area"]}


def test_rerunning_a_widget_cell_keeps_the_users_value(kernel, notebook):
    _, kc = kernel
    update(kc, notebook["slider"], {"value": 0.75})
    reply, out = execute(kc, 'let scale = slider("scale", 0.0, 2.0, 1.0);\nscale', "widget")
    assert reply["status"] == "ok"
    (again,) = opened(out, "FloatSliderModel")
    assert again["content"]["data"]["state"]["value"] == 0.75
    closed = {m["content"]["comm_id"] for m in of_type(out, "comm_close")}
    assert notebook["slider"] in closed
    notebook["slider"] = again["content"]["comm_id"]
    # Changed code: a new widget with its own start value.
    reply, out = execute(kc, 'let scale = slider("scale", 0.0, 4.0, 3.0);\nscale', "widget")
    (fresh,) = opened(out, "FloatSliderModel")
    assert fresh["content"]["data"]["state"]["value"] == 3.0
    notebook["slider"] = fresh["content"]["comm_id"]
    out = update(kc, notebook["slider"], {"value": 2.0})
    assert area_texts(out, notebook["area"])[-1] == "scaled = 20.00\n1"


def test_live_view_redraws_without_compiling(kernel, notebook):
    _, kc = kernel
    reply, out = execute(
        kc, 'let k = slider("k", 0, 10, 1);\nlet k2 = k.clone();\n'
            'display(&k);\nlive(&[&k], move || format!("k = {:.1}", k2.value()))', "live")
    assert reply["status"] == "ok", reply
    (k,) = opened(out, "FloatSliderModel")
    # The view shows itself where it is made; as the last expression it adds nothing.
    assert not of_type(out, "execute_result")
    views = [m["content"]["data"][VIEW]["model_id"] for m in of_type(out, "display_data")]
    assert views[0] == k["content"]["comm_id"]
    view_id = views[1]
    assert area_texts(out, view_id)[-1] == "k = 1.0"
    out = update(kc, k["content"]["comm_id"], {"value": 7.0})
    assert area_texts(out, view_id)[-1] == "k = 7.0"


def test_progress_updates_live_and_buttons_and_forms_rerun(kernel):
    _, kc = kernel
    reply, out = execute(kc, 'let p = progress("work", 4);\ndisplay(&p);\n'
                             'for i in 1..=4 { p.set(i); }', "progress")
    assert reply["status"] == "ok", reply
    values = [m["content"]["data"]["state"]["value"] for m in of_type(out, "comm_msg")
              if "value" in m["content"]["data"].get("state", {})]
    assert values == [1.0, 2.0, 3.0, 4.0]
    reply, out = execute(kc, 'let go = button("go");\nlet a = int_slider("a", 0, 9, 1);\n'
                             'let b = int_slider("b", 0, 9, 2);\nlet f = form(&[&a, &b], "Apply");\n'
                             'display(&go);\nf', "controls")
    assert reply["status"] == "ok", reply
    go = opened(out, "ButtonModel")[0]["content"]["comm_id"]
    submit = opened(out, "ButtonModel")[1]["content"]["comm_id"]
    a, b = [m["content"]["comm_id"] for m in opened(out, "IntSliderModel")]
    reply, out = execute(kc, 'format!("clicks {} sum {}", go.clicks(), a.value() + b.value())',
                         "uses")
    area = area_of(out)
    out = send_comm(kc, go, {"method": "custom", "content": {"event": "click"}})
    assert area_texts(out, area)[-1] == '"clicks 1 sum 3"'
    # Form fields wait for the submit button, then apply together in one rerun.
    assert not area_texts(update(kc, a, {"value": 5}), area)
    assert not area_texts(update(kc, b, {"value": 6}), area)
    out = send_comm(kc, submit, {"method": "custom", "content": {"event": "click"}})
    assert area_texts(out, area)[-1] == '"clicks 1 sum 11"'


def test_deps_shows_the_graph(kernel, notebook):
    _, kc = kernel
    reply, out = execute(kc, ":deps", "deps")
    (result,) = of_type(out, "execute_result")
    data = result["content"]["data"]
    html = data["text/html"]
    assert "<table" in html and "scale" in html and "model" in html
    # The picture: the slider beside its cell, the edge to the cell that reads it named `scale`
    # in the widgets' colour, in the HTML and on its own for renderers without HTML.
    svg = data["image/svg+xml"]
    assert svg.startswith("<svg") and svg in html
    assert '<g class="widget">' in svg and ">scale</text>" in svg
    assert svg.count('class="edge"') >= 1


def test_widgets_of_a_restarted_runtime_show_disabled(kernel):
    """Interrupting a cell restarts the runtime, which held the widgets' values and callbacks:
    the browser is told to show those controls disabled, the error names them, and rerunning
    the widget's cell makes it anew with the user's value."""
    km, kc = kernel
    code = 'let gain = slider("gain", 0.0, 2.0, 1.0);\ngain'
    reply, out = execute(kc, code, "gain")
    assert reply["status"] == "ok", reply
    (gain,) = opened(out, "FloatSliderModel")
    gain_id = gain["content"]["comm_id"]
    assert gain["content"]["data"]["state"]["disabled"] is False
    update(kc, gain_id, {"value": 1.25})

    msg_id = start_endless_cell(kc, TIMEOUT)
    km.interrupt_kernel()
    disabled = False
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if (msg["msg_type"] == "comm_msg" and msg["content"]["comm_id"] == gain_id
                and msg["content"]["data"].get("state") == {"disabled": True}):
            disabled = True
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            break
    assert disabled, "the slider of the old runtime is shown disabled"
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["content"]["ename"] == "Interrupted"
    assert 'FloatSlider "gain"' in reply["content"]["evalue"], reply["content"]["evalue"]

    reply, out = execute(kc, code, "gain")
    assert reply["status"] == "ok", reply
    (again,) = opened(out, "FloatSliderModel")
    assert again["content"]["data"]["state"]["value"] == 1.25
    assert again["content"]["data"]["state"]["disabled"] is False


def test_graph_widget_is_an_anywidget_checked_against_its_graph(kernel):
    """The model's graph as a widget: an anywidget model with its ES module inline, shown with
    an SVG fallback beside it; a click (an update of `selected`) reruns the cells that read it, and a
    tensor that is not in the graph or an overlay the kernel did not send is refused."""
    _, kc = kernel
    reply, out = execute(kc, 'let gm = workbench("resnet8_int8").unwrap();\n'
                             'let gv = graph_widget(&graph(&gm).unwrap());\ngv', "graph")
    assert reply["status"] == "ok", reply
    (model,) = opened(out, "AnyModel")
    state = model["content"]["data"]["state"]
    assert (state["_model_module"], state["_view_name"]) == ("anywidget", "AnyView")
    assert state["_model_module_version"] == "~0.11.*"
    assert "export default" in state["_esm"] and state["svg"].startswith("<svg")
    assert list(state["overlays"]) == ["none"]
    tensors = state["tensors"]
    gid = model["content"]["comm_id"]
    # The view, then its picture as an output of its own (nbconvert's HTML export shows only the
    # view of a bundle that has one), marked as the view's twin, which the view's CSS hides.
    (view,) = of_type(out, "display_data")
    assert view["content"]["data"][VIEW]["model_id"] == gid
    assert set(view["content"]["data"]) == {VIEW, "text/plain"}
    (shown,) = of_type(out, "execute_result")
    data = shown["content"]["data"]
    assert data["text/html"].startswith('<div class="qplay-graph-twin">') and "<svg" in data["text/html"]
    assert data["image/svg+xml"].startswith("<svg") and ".qplay-graph-twin" in state["_css"]
    reply, out = execute(kc, 'println!("picked {:?}", gv.selected());', "reader")
    assert reply["status"] == "ok", reply
    out = update(kc, gid, {"selected": tensors[3]})
    assert of_type(out, "comm_msg")[0]["content"]["data"]["method"] == "echo_update"
    assert area_texts(out)[-1] == f'picked Some("{tensors[3]}")\n'
    for bad in [{"selected": "no_such_tensor"}, {"selected": 7}, {"overlay": "saturation"}]:
        out = update(kc, gid, bad)
        (resync,) = of_type(out, "comm_msg")
        assert resync["content"]["data"]["method"] == "update", bad
        key = next(iter(bad))
        assert resync["content"]["data"]["state"][key] == {"selected": tensors[3], "overlay": "xmodel_err"}[key]
        assert not area_texts(out), bad
