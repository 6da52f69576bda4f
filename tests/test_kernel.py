"""The qplay kernel under jupyter_client: execution, rich output, errors, interrupts, signing."""

import json
import queue
import time
import uuid

import pytest
from conftest import start_endless_cell

TIMEOUT = 120  # a cell may compile for a while on a loaded 2-core machine


def run(kc, code, timeout=TIMEOUT):
    """Executes code; returns (reply content, list of iopub messages for it)."""
    msg_id = kc.execute(code)
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    outputs = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        outputs.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    return reply["content"], outputs


def of_type(outputs, kind):
    return [m["content"] for m in outputs if m["msg_type"] == kind]


def test_execute_streams_and_result(kernel):
    _, kc = kernel
    reply, out = run(kc, 'println!("hello"); eprintln!("careful"); 6 * 7')
    assert reply["status"] == "ok"
    kinds = [m["msg_type"] for m in out]
    assert kinds[0] == "status" and kinds[1] == "execute_input" and kinds[-1] == "status"
    streams = of_type(out, "stream")
    assert {"name": "stdout", "text": "hello\n"} in streams
    assert {"name": "stderr", "text": "careful\n"} in streams
    (result,) = of_type(out, "execute_result")
    assert result["data"]["text/plain"] == "42"
    assert result["execution_count"] == reply["execution_count"]


def test_execution_count_increments(kernel):
    _, kc = kernel
    first, _ = run(kc, "let a = 1;")
    second, _ = run(kc, "a + 1")
    assert second["execution_count"] == first["execution_count"] + 1


def test_prelude_is_preloaded_and_registry_shared_across_cells(kernel):
    _, kc = kernel
    reply, _ = run(kc, 'let m = load("resnet8_uint8").unwrap();')
    assert reply["status"] == "ok"
    reply, out = run(kc, 'let again = load("resnet8_uint8").unwrap(); (load_count("resnet8_uint8"), m.name().to_string())')
    assert reply["status"] == "ok", reply
    assert of_type(out, "execute_result")[0]["data"]["text/plain"] == '(1, "resnet8_uint8")'


def test_display_outputs_in_order_and_updates(kernel):
    _, kc = kernel
    code = (
        'display(&Html("<b>first</b>".into()));\n'
        'let h = display(&"second".to_string());\n'
        'h.update(&"second, updated".to_string());\n'
        'Html("<i>last</i>".into())'
    )
    reply, out = run(kc, code)
    assert reply["status"] == "ok"
    rich = [m for m in out if m["msg_type"] in ("display_data", "update_display_data", "execute_result")]
    assert [m["msg_type"] for m in rich] == ["display_data", "display_data", "update_display_data", "execute_result"]
    assert rich[0]["content"]["data"]["text/html"] == "<b>first</b>"
    second_id = rich[1]["content"]["transient"]["display_id"]
    assert rich[2]["content"]["transient"]["display_id"] == second_id
    assert rich[2]["content"]["data"]["text/plain"] == "second, updated"
    assert rich[3]["content"]["data"]["text/html"] == "<i>last</i>"


def test_evaluation_renders_as_html_table(kernel):
    _, kc = kernel
    code = 'let data = Dataset::bundled(&qplay::paths::root(), Bundled::Lossless249).unwrap();\n' \
           'quick(load("resnet8_int8").unwrap().as_ref(), &data, 5).unwrap()'
    reply, out = run(kc, code)
    assert reply["status"] == "ok", reply
    data = of_type(out, "execute_result")[0]["data"]
    assert "<table>" in data["text/html"] and "airplane" in data["text/html"]
    assert "95 % CI" in data["text/plain"]


def test_unit_results_are_not_shown(kernel):
    _, kc = kernel
    reply, out = run(kc, "for i in 0..2 { let _ = i; }")
    assert reply["status"] == "ok"
    assert of_type(out, "execute_result") == []


def test_compile_error_shows_the_span(kernel):
    _, kc = kernel
    reply, out = run(kc, "let y: u32 = \"text\";")
    assert reply["status"] == "error"
    (err,) = of_type(out, "error")
    assert err["ename"] == "CompilationError"
    assert "mismatched types" in "\n".join(err["traceback"])


def test_panic_is_reported_and_kernel_lives(kernel):
    _, kc = kernel
    run(kc, "let keep = 7;")
    reply, out = run(kc, 'panic!("boom:\\n  second line")')
    assert reply["status"] == "error"
    assert any("boom" in s["text"] for s in of_type(out, "stream"))
    # The message itself is in the error, for clients that show only that (papermill).
    assert reply["evalue"].startswith("the cell panicked: boom: second line;"), reply["evalue"]
    reply, out = run(kc, "keep * 6")
    assert reply["status"] == "ok"
    assert of_type(out, "execute_result")[0]["data"]["text/plain"] == "42"


def test_interrupt_stops_an_endless_loop(kernel):
    km, kc = kernel
    run(kc, "let before = 1;")
    msg_id = start_endless_cell(kc, TIMEOUT)
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "Interrupted"
    assert "before" in reply["content"]["evalue"], "the lost variables are named"
    reply, out = run(kc, "1 + 2")
    assert reply["status"] == "ok"
    assert of_type(out, "execute_result")[0]["data"]["text/plain"] == "3"


def test_complete_inspect_is_complete(kernel):
    _, kc = kernel
    kc.complete("let v: Vec<u8> = Vec::new(); v.pu", 33)
    reply = kc.get_shell_msg(timeout=TIMEOUT)["content"]
    assert reply["status"] == "ok"
    assert "push" in reply["matches"]
    kc.is_complete("fn f() {")
    assert kc.get_shell_msg(timeout=TIMEOUT)["content"]["status"] == "incomplete"
    kc.is_complete("let x = 1;")
    assert kc.get_shell_msg(timeout=TIMEOUT)["content"]["status"] == "complete"


def test_inspect_shows_a_prelude_items_doc_comment(kernel):
    """Shift+Tab on a prelude function, alone or as the start of a call, shows its signature and
    the doc comment written in the prelude."""
    _, kc = kernel
    for code in ("quick", "let e = quick(", "workbench"):
        kc.inspect(code, len(code))
        reply = kc.get_shell_msg(timeout=TIMEOUT)["content"]
        assert reply["status"] == "ok" and reply["found"], (code, reply)
        text = reply["data"]["text/plain"]
        if "quick" in code:
            assert "pub fn quick" in text and "A quick estimate" in text, text
        else:
            assert "pub fn workbench" in text and "Opens a quantized model" in text, text


def test_a_variable_whose_type_cannot_be_inferred_is_named(kernel):
    """rustc cannot type it: the compiler's error, drawn on the cell. rust-analyzer cannot type
    it (a value of ONNX Runtime's own type, a crate the cells do not see): the variable is named
    and an explicit type asked for."""
    _, kc = kernel
    reply, _ = run(kc, "let nothing_known = Vec::new();")
    assert reply["status"] == "error"
    assert "type annotations needed" in reply["evalue"], reply
    assert any("nothing_known" in line for line in reply["traceback"]), reply
    reply, _ = run(kc, 'let raw_outputs = qplay::onnx::OnnxModel::load("resnet8_int8", '
                       '&qplay::paths::root().join("models/resnet8_int8.onnx")).unwrap()'
                       '.run_outputs(Dataset::bundled(&qplay::paths::root(), Bundled::Test).unwrap()'
                       '.nhwc_batch(&[0]).view(), None).unwrap();')
    assert reply["status"] == "error"
    assert "`raw_outputs`" in reply["evalue"] and "explicit type" in reply["evalue"], reply
    reply, out = run(kc, "let known: Vec<u8> = Vec::new(); known.len()")
    assert reply["status"] == "ok", reply
    assert of_type(out, "execute_result")[0]["data"]["text/plain"] == "0"


def test_completion_right_after_start_waits_for_the_engine():
    """Tab pressed in the first seconds of a kernel, while evcxr and the prelude load: the
    answer comes when the engine is ready, with the matches, not empty at once."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="qplay", startup_timeout=300)
    try:
        code = "let t = Datas"
        msg_id = kc.complete(code, len(code))
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        # start_new_kernel may leave a second kernel_info_reply behind.
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kc.get_shell_msg(timeout=TIMEOUT)
        assert reply["content"]["status"] == "ok"
        assert "Dataset" in reply["content"]["matches"], reply
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_wrongly_signed_message_is_ignored(kernel, tmp_path):
    km, kc = kernel
    marker = tmp_path / "ran.txt"
    session = kc.session
    good_key = session.key
    session.key = b"not-the-key"
    try:
        msg = session.msg("execute_request", {"code": f'std::fs::write("{marker}", "x").unwrap();', "silent": False,
                                              "store_history": True, "user_expressions": {}, "allow_stdin": False,
                                              "stop_on_error": True})
        kc.shell_channel.send(msg)
    finally:
        session.key = good_key
    with pytest.raises(queue.Empty):
        kc.get_shell_msg(timeout=3)
    assert not marker.exists()
    reply, _ = run(kc, "1")  # still serving correctly signed messages
    assert reply["status"] == "ok"


def test_each_evcxr_content_block_is_its_own_output(kernel):
    """Values shown with evcxr's convention mid-cell (as plotters' evcxr feature does) each get
    an output of their own; the last one is the result."""
    _, kc = kernel
    reply, out = run(kc, 'Html("<b>one</b>".into()).evcxr_display();\n'
                         'Html("<b>two</b>".into()).evcxr_display();\n'
                         'println!("between");\nHtml("<i>last</i>".into())')
    assert reply["status"] == "ok", reply
    shown = [(m["msg_type"], m["content"].get("data", {}).get("text/html") or m["content"].get("text"))
             for m in out if m["msg_type"] in ("display_data", "stream", "execute_result")]
    assert shown == [("display_data", "<b>one</b>"), ("display_data", "<b>two</b>"),
                     ("stream", "between\n"), ("execute_result", "<i>last</i>")]


def test_two_kernels_at_once_build_apart(kernel):
    """Two notebooks open at once: each kernel compiles in its own build slot, so cells that
    run at the same moment never load each other's code (with one shared build directory the
    second round here crashed one runtime)."""
    import threading

    from jupyter_client.manager import start_new_kernel

    _, a = kernel
    km_b, b = start_new_kernel(kernel_name="qplay", startup_timeout=300)
    try:
        for r in range(3):
            results = {}

            def go(name, kc, code):
                reply, out = run(kc, code)
                results[name] = (reply["status"], [o["data"]["text/plain"] for o in of_type(out, "execute_result")])

            threads = [threading.Thread(target=go, args=("a", a, f'let slot_a{r} = "kernel a {r}"; slot_a{r}')),
                       threading.Thread(target=go, args=("b", b, f"let slot_b{r} = {r} * 1000 + 7; slot_b{r}"))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert results == {"a": ("ok", [f'"kernel a {r}"']), "b": ("ok", [str(r * 1000 + 7)])}
        reply, out = run(a, 'format!("{slot_a0}|{slot_a1}|{slot_a2}")')
        assert of_type(out, "execute_result")[0]["data"]["text/plain"] == '"kernel a 0|kernel a 1|kernel a 2"'
    finally:
        b.stop_channels()
        km_b.shutdown_kernel(now=True)
