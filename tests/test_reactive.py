"""Reactive reruns under jupyter_client, driven as JupyterLab drives them (execute requests with
`cellId`, then widget `comm_msg` updates): dataflow order, wrapped cells that rerun without
compiling, what later cells see, the fallback for cells that cannot be wrapped, newer values
superseding a running chain, and cooperative interrupts."""

import re
import time

import pytest
from conftest import start_endless_cell
from test_widgets import TIMEOUT, area_of, area_texts, collect, execute, of_type, opened, update


def run_ok(kc, code, key):
    """Runs a cell that must succeed; returns its IOPub messages."""
    reply, out = execute(kc, code, key)
    assert reply["status"] == "ok", reply
    return out


def deps(kc):
    """`:deps` as text: (compiles so far, {first line of a cell: how it reruns})."""
    (result,) = of_type(run_ok(kc, ":deps", "deps"), "execute_result")
    text = result["content"]["data"]["text/plain"]
    compiles = int(re.search(r"evcxr has compiled (\d+) cell", text).group(1))
    reruns, current = {}, None
    for line in text.splitlines():
        if line.startswith("#"):
            current = line.split(" ", 1)[1]
        elif line.strip().startswith("reruns:") and current:
            reruns[current] = line.split(":", 1)[1].strip()
    return compiles, reruns


@pytest.fixture(scope="module")
def wbc(kernel):
    """The issue's reproduction: W (a slider), B (uses it), C (uses B's value)."""
    _, kc = kernel
    out = run_ok(kc, 'let w = slider("w", 0.0, 10.0, 1.0); w', "W")
    (w,) = opened(out, "FloatSliderModel")
    areas = {}
    for key, code in [("B", "let z = w.value() + 100.0; z"), ("C", 'println!("c sees {}", z);')]:
        out = run_ok(kc, code, key)
        areas[key] = area_of(out)
    return {"w": w["content"]["comm_id"], "areas": areas}


def test_reruns_follow_the_dataflow_not_the_run_order(kernel, wbc):
    _, kc = kernel
    # B runs again by hand, so it last ran after C; C still reads B's z and must follow it.
    out = run_ok(kc, "let z = w.value() + 100.0; z", "B")
    wbc["areas"]["B"] = area_of(out)
    out = update(kc, wbc["w"], {"value": 5.0})
    assert area_texts(out, wbc["areas"]["B"])[-1] == "105.0"
    assert area_texts(out, wbc["areas"]["C"])[-1] == "c sees 105\n"
    b_at = max(i for i, m in enumerate(out) if m["msg_type"] == "comm_msg"
               and m["content"]["comm_id"] == wbc["areas"]["B"])
    c_at = min(i for i, m in enumerate(out) if m["msg_type"] == "comm_msg"
               and m["content"]["comm_id"] == wbc["areas"]["C"])
    assert b_at < c_at, "C redrew before B"


def test_a_wrapped_rerun_compiles_nothing(kernel, wbc):
    _, kc = kernel
    update(kc, wbc["w"], {"value": 2.0})  # wraps what is not wrapped yet
    before, reruns = deps(kc)
    assert reruns["let z = w.value() + 100.0; z"].startswith("wrapped"), reruns
    assert reruns['println!("c sees {}", z);'].startswith("wrapped"), reruns
    for value in (3.0, 4.0, 6.0):
        out = update(kc, wbc["w"], {"value": value})
        assert area_texts(out, wbc["areas"]["C"])[-1] == f"c sees {100 + value:g}\n"
    after, reruns = deps(kc)
    assert after == before, f"{after - before} compiles for three widget changes"
    calls = int(re.search(r"called (\d+) time", reruns["let z = w.value() + 100.0; z"]).group(1))
    assert calls >= 3


def test_a_cell_run_by_hand_sees_the_latest_values(kernel, wbc):
    _, kc = kernel
    update(kc, wbc["w"], {"value": 7.0})
    out = run_ok(kc, "z * 2.0", "reader")
    assert area_texts(out)[-1] == "214.0"


def test_assignments_to_earlier_cells_variables_persist(kernel, wbc):
    _, kc = kernel
    run_ok(kc, "let mut moves = 0u64;\nlet mut last = String::new();", "counters")
    out = run_ok(kc, 'moves += 1;\nlast = format!("w={}", w.value());\nmoves', "count")
    area = area_of(out)
    for value in (1.0, 2.0, 3.0):
        out = update(kc, wbc["w"], {"value": value})
    assert area_texts(out, area)[-1] == "4"
    out = run_ok(kc, 'format!("{moves} {last}")', "check-counters")
    (result,) = of_type(out, "execute_result")
    assert result["content"]["data"]["text/plain"] == '"4 w=3"'


def test_cells_that_cannot_be_wrapped_rerun_compiled(kernel, wbc):
    _, kc = kernel
    code = "fn doubled(x: f64) -> f64 { x * 2.0 }\nlet d = doubled(w.value()); d"
    out = run_ok(kc, code, "item-cell")
    area = area_of(out)
    out = update(kc, wbc["w"], {"value": 4.5})
    assert area_texts(out, area)[-1] == "9.0"
    compiles, reruns = deps(kc)
    assert reruns[code.splitlines()[0]].startswith("compiled: it declares items (`fn`)"), reruns
    out = update(kc, wbc["w"], {"value": 1.5})
    assert area_texts(out, area)[-1] == "3.0"
    assert deps(kc)[0] > compiles, "the unwrappable cell was compiled for its rerun"
    execute(kc, "1", "other", deleted=["item-cell"])


def test_names_inside_a_fn_are_not_notebook_variables(kernel, wbc):
    """An item cannot read a notebook variable, so a helper whose parameter is called `z` does
    not rerun when `z` changes (it would be compiled again each time); its caller does."""
    _, kc = kernel
    helper = 'fn shout(z: f64) -> String {\n    format!("{z}!")\n}'
    run_ok(kc, helper, "helper")
    out = run_ok(kc, "let loud = shout(z); loud", "caller")
    area = area_of(out)
    out = update(kc, wbc["w"], {"value": 2.5})
    assert area_texts(out, area)[-1] == '"102.5!"'
    _, reruns = deps(kc)
    assert helper.splitlines()[0] not in reruns, reruns
    assert "let loud = shout(z); loud" in reruns, reruns
    execute(kc, "1", "other", deleted=["helper", "caller"])


def test_editing_a_wrapped_cell_wraps_it_anew(kernel, wbc):
    _, kc = kernel
    out = run_ok(kc, 'println!("c now sees {}", z);', "C")
    wbc["areas"]["C"] = area_of(out)
    out = update(kc, wbc["w"], {"value": 8.0})
    assert area_texts(out, wbc["areas"]["C"])[-1] == "c now sees 108\n"
    _, reruns = deps(kc)
    assert reruns['println!("c now sees {}", z);'].startswith("wrapped"), reruns


def test_a_wrapped_call_answers_on_the_link_with_its_stderr_and_panic(kernel, wbc):
    """A wrapped rerun's whole answer comes back before the rerun ends: what it printed on
    stdout and on stderr (captured in the runtime while it answers; the two streams keep their
    own order, not each other's, as in a compiled cell), and a panic's message."""
    _, kc = kernel
    code = ('let told = w.value();\nprintln!("out {told}");\neprintln!("err {told}");\n'
            'if told > 9.0 { panic!("over nine: {told}") }\ntold')
    out = run_ok(kc, code, "loud")
    area = area_of(out)
    update(kc, wbc["w"], {"value": 2.0})  # wraps it
    compiles, reruns = deps(kc)
    assert reruns[code.splitlines()[0]].startswith("wrapped"), reruns
    for value in (3.0, 4.0):
        out = update(kc, wbc["w"], {"value": value})
        text = area_texts(out, area)[-1]
        assert sorted(text.splitlines()) == sorted([f"out {value:g}", f"err {value:g}",
                                                    f"{value:.1f}"]), text
        assert text.endswith(f"{value:.1f}"), text
    out = update(kc, wbc["w"], {"value": 9.5})
    text = area_texts(out, area)[-1]
    assert "out 9.5\n" in text and "err 9.5\n" in text, text
    assert "panicked at" in text and text.count("over nine: 9.5") == 2, text
    assert text.endswith("Panic: the cell panicked: over nine: 9.5; the kernel lives on."), text
    assert deps(kc)[0] == compiles, "a wrapped rerun compiled"
    execute(kc, "1", "other", deleted=["loud"])


def test_a_newer_value_supersedes_a_running_chain(kernel, wbc):
    """Updates sent while slow cells rerun: the final state reflects the last value sent."""
    _, kc = kernel
    out = run_ok(kc, 'std::thread::sleep(std::time::Duration::from_millis(300));\n'
            'let slow = w.value(); slow', "slow")
    area = area_of(out)
    ids = [update(kc, wbc["w"], {"value": float(v)}, wait=False) for v in range(1, 7)]
    seen = []
    for msg_id in ids:
        seen.extend(collect(kc, msg_id))
    assert area_texts(seen, area)[-1] == "6.0"
    assert area_texts(seen, wbc["areas"]["C"])[-1] == "c now sees 106\n"
    execute(kc, "1", "other", deleted=["slow"])


def test_an_interrupt_stops_a_long_evaluation_and_keeps_the_session(kernel, wbc):
    """The prelude checks the interrupt flag: the cell ends with Interrupted, the runtime and
    its variables and widgets survive."""
    km, kc = kernel
    run_ok(kc, 'let test = Dataset::bundled(&qplay::paths::root(), Bundled::Test)'
                           '.unwrap();\nlet model = load("resnet8_int8").unwrap();', "setup")
    msg = kc.session.msg("execute_request", {
        "code": 'println!("evaluating");\nfor _ in 0..1000 { '
                'evaluate(model.as_ref(), &test, &EvalOptions::default()).unwrap(); }',
        "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False,
        "stop_on_error": True}, metadata={"cellId": "long"})
    kc.shell_channel.send(msg)
    while True:
        m = kc.get_iopub_msg(timeout=TIMEOUT)
        if m["parent_header"].get("msg_id") == msg["header"]["msg_id"] and m["msg_type"] == "stream":
            break
    time.sleep(0.5)
    km.interrupt_kernel()
    out = collect(kc, msg["header"]["msg_id"])
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    while reply["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
        reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "Interrupted", reply["content"]
    assert "live on" in reply["content"]["evalue"]
    assert not [m for m in of_type(out, "comm_msg")
                if m["content"]["data"].get("state") == {"disabled": True}]
    out = run_ok(kc, "format!(\"{} images, {}\", test.len(), model.name())", "after")
    (result,) = of_type(out, "execute_result")
    assert result["content"]["data"]["text/plain"] == '"10000 images, resnet8_int8"'
    out = update(kc, wbc["w"], {"value": 9.0})
    assert area_texts(out, wbc["areas"]["C"])[-1] == "c now sees 109\n"


def test_an_endless_loop_still_restarts_the_runtime(kernel):
    km, kc = kernel
    msg_id = start_endless_cell(kc, TIMEOUT)
    km.interrupt_kernel()
    collect(kc, msg_id)
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["content"]["ename"] == "Interrupted"
    assert "restarted" in reply["content"]["evalue"]
    assert "Variables lost" in reply["content"]["evalue"]
