"""The community's kernel conformance suite (jupyter_kernel_test) run against qplay."""

import unittest

import jupyter_kernel_test as jkt


class QplayKernelTests(jkt.KernelTests):
    @classmethod
    def setUpClass(cls):
        # The suite allows 15 s per request; the kernel's first cell also waits for the engine
        # (the runtime process and the prelude) to start, so run one cell before the suite.
        super().setUpClass()
        cls.kc.execute_interactive("1", timeout=300)

    # Each cell is compiled by rustc: allow more than the suite's 15 s on a loaded 2-core machine.
    def execute_helper(self, code, timeout=120, **kwargs):
        return super().execute_helper(code, timeout=timeout, **kwargs)

    def get_non_kernel_info_reply(self, timeout=None):
        return super().get_non_kernel_info_reply(timeout=120 if timeout is None else max(timeout, 120))

    kernel_name = "qplay"
    language_name = "rust"
    file_extension = ".rs"

    code_hello_world = 'println!("hello, world");'
    code_stderr = 'eprintln!("oops");'

    completion_samples = [{"text": "let v: Vec<u8> = Vec::new(); v.pu", "matches": {"push", "push_mut"}}]
    complete_code_samples = ["let x = 1;", "fn f() -> u8 { 3 }"]
    incomplete_code_samples = ["fn f() {", "let v = vec![1,"]
    invalid_code_samples = ["let x = (1];"]

    code_execute_result = [{"code": "6 * 7", "result": "42"}, {"code": '"hi".to_string()', "result": '"hi"'}]
    code_display_data = [
        {"code": 'display(&Html("<b>x</b>".into()));', "mime": "text/html"},
        {"code": 'display(&Svg("<svg xmlns=\'http://www.w3.org/2000/svg\'></svg>".into()));', "mime": "image/svg+xml"},
    ]
    code_clear_output = "clear_output(false);"
    code_generate_error = "let y: u32 = \"not a number\";"
    code_inspect_sample = "String::new"
    code_history_pattern = "6 *"
    supported_history_operations = ("tail", "range", "search")


if __name__ == "__main__":
    unittest.main()
